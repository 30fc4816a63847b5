"""The evaluation report: the paper's tables filled with our numbers, frames side by side and a
Fig. 7-style spectrogram-over-motion plot, in one self-contained HTML file rendered from the
jinja2 template ``report.html.j2`` next to this module (every value escaped, figures embedded).

- Table 1 layout: one row per method (ground truth, unguided, SG, DG), one column group per
  language of the test clips (the paper's PATS = English, CNAS = Mandarin), columns
  FVD, BAS, FGD, Sync-C, Div.
- Table 2 layout: guidance time rate 0 % (the unguided run) and the configured rate, each cell
  "SG / DG", plus TC, which comes from the stage's timings file (a timing is not a DVC metric).
  The other rates come from queued experiments (docs/results.md, "Ablations").
- Region quality and hands: PSNR / SSIM inside the face, hand and body areas against the real
  frames, and HKC / HKV (:mod:`pipeline.metrics.hands`) of every mode and of the real videos,
  whose HKV is the reference (it has no better direction).
- Long videos: whole-frame PSNR of the first and last quarter of each generated video, the drift
  between them and the share of videos that hold (drift <= ``evaluate.max_drift_db``), and a
  plot of PSNR against segment index, one line per mode (:mod:`pipeline.evaluation.drift`).
- Frames: for a few clips, rows ground truth / none / SG / DG at evenly spaced times, the
  reference face box and the ground truth's hand areas outlined.
- Fig. 7: the clip's mel spectrogram over the hand speed and lip opening of each video.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import jinja2
import numpy as np

from pipeline.io.audio import frame_rms
from pipeline.io.outputs import atomic_file
from pipeline.metrics.lip_sync import lip_sync_correlation
from pipeline.metrics.regions import region_masks

if TYPE_CHECKING:  # imported where used: evaluate loads torch and the metric networks
    from pipeline.evaluation.evaluate import MetricSettings

MODE_LABELS = {"ground_truth": "Ground truth", "none": "PAHA w/o guidance",
               "sg": "PAHA-SG", "dg": "PAHA-DG"}  # fmt: skip
_FACE_COLOUR, _HAND_COLOUR = (255, 60, 60), (60, 200, 255)
TEMPLATE = "report.html.j2"


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table1_rows(groups: Mapping[str, Mapping[str, dict]], sync_name: str) -> tuple[list, list]:
    """Table 1 as ``(header rows, body rows)`` of strings.

    groups: group name (``all``, ``en``, ``zh``...) -> mode -> metrics.
    """
    # BAS in Bailando's protocol, the paper's (pipeline.metrics.beats); `bas` stays in the JSON.
    columns = [("fvd", "FVD ↓", 2), ("bas_bailando", "BAS ↑", 4), ("fgd", "FGD ↓", 3),
               (f"{sync_name}_c", "Sync-C ↑", 3), ("div", "Div. ↑", 3)]  # fmt: skip
    names = list(groups)
    header = [["Method"] + [n for n in names for _ in columns],
              [""] + [label for _ in names for _, label, _ in columns]]  # fmt: skip
    modes = list(next(iter(groups.values())))
    body = []
    for mode in modes:
        row = [MODE_LABELS.get(mode, mode)]
        for name in names:
            metrics = groups[name].get(mode, {})
            row += [_cell(metrics.get(key), digits) for key, _, digits in columns]
        body.append(row)
    return header, body


def table2_rows(
    modes: Mapping[str, dict], rate: float, sync_name: str, timings: Mapping[str, dict]
) -> tuple[list, list]:
    """Table 2 as ``(header, rows)``: rate 0 % is the unguided run, the configured rate SG / DG.

    modes: mode -> metrics; timings: mode -> ``{"tc": seconds per segment}`` (the timings file's
    ``modes``), merged in for the TC column.
    """
    keys = [("fvd", 2), ("bas_bailando", 4), ("fgd", 3), (f"{sync_name}_c", 3), ("div", 3),
            ("tc", 3)]  # fmt: skip
    header = [["Guidance time rate", "FVD ↓", "BAS ↑", "FGD ↓", "Sync-C ↑", "Div. ↑", "TC ↓"]]
    modes = {m: {**modes.get(m, {}), **timings.get(m, {})} for m in ("none", "sg", "dg")}
    rows = []
    none = modes.get("none", {})
    rows.append(["0 %"] + [f"{_cell(none.get(k), d)} / {_cell(none.get(k), d)}" for k, d in keys])
    sg, dg = modes.get("sg", {}), modes.get("dg", {})
    rows.append([f"{rate:.0%}"] + [f"{_cell(sg.get(k), d)} / {_cell(dg.get(k), d)}"
                                    for k, d in keys])  # fmt: skip
    return header, rows


def region_rows(modes: Mapping[str, dict]) -> tuple[list, list]:
    """Region PSNR / SSIM and the hand keypoint metrics HKC / HKV as ``(header, rows)``, one row
    per mode; the ground truth's row has no PSNR / SSIM (it is their reference) but its HKC and
    HKV, against which the modes' HKV is read."""
    regions = ("face", "hand", "body")
    header = [["Method"] + [f"PSNR {r} ↑" for r in regions] + [f"SSIM {r} ↑" for r in regions]
              + ["HKC ↑", "HKV"]]  # fmt: skip
    rows = []
    for mode, metrics in modes.items():
        rows.append([MODE_LABELS.get(mode, mode)]
                    + [_cell(metrics.get(f"psnr_{r}"), 2) for r in regions]
                    + [_cell(metrics.get(f"ssim_{r}"), 3) for r in regions]
                    + [_cell(metrics.get("hkc"), 3), _cell(metrics.get("hkv"), 4)])  # fmt: skip
    return header, rows


def lip_sync_rows(modes: Mapping[str, dict]) -> tuple[list, list]:
    """Lip sync as ``(header, rows)``, one row per mode, ground truth first: the lip opening's
    correlation with the clip's own speech and with another clip's (the control), and their
    difference (:mod:`pipeline.metrics.lip_sync`)."""
    header = [["Method", "lip_sync_r ↑", "lip_sync_r, other clip's speech",
               "own - other ↑"]]  # fmt: skip
    rows = []
    for mode, metrics in modes.items():
        own, other = metrics.get("lip_sync_r"), metrics.get("lip_sync_r_swapped")
        margin = None if own is None or other is None else own - other
        rows.append([MODE_LABELS.get(mode, mode), _cell(own, 3), _cell(other, 3),
                     _cell(margin, 3)])  # fmt: skip
    return header, rows


def drift_rows(modes: Mapping[str, dict], max_drift_db: float | None) -> tuple[list, list]:
    """Quality along the video as ``(header, rows)``, one row per mode: whole-frame PSNR of the
    first and last quarter, the drift (first - last, dB) and the share of videos that hold.
    The ground truth's row is null: it is the reference."""
    limit = "evaluate.max_drift_db" if max_drift_db is None else f"{max_drift_db:g} dB"
    header = [["Method", "PSNR first quarter ↑", "PSNR last quarter ↑", "Drift (dB) ↓",
               f"Share with drift ≤ {limit} ↑"]]  # fmt: skip
    rows = [[MODE_LABELS.get(mode, mode), _cell(metrics.get("psnr_first_quarter"), 2),
             _cell(metrics.get("psnr_last_quarter"), 2), _cell(metrics.get("psnr_drift_db"), 2),
             _cell(metrics.get("drift_hold_share"), 2)]
            for mode, metrics in modes.items()]  # fmt: skip
    return header, rows


def outlined(
    frame: np.ndarray, face_box: np.ndarray, hand_mask: np.ndarray, scale: int
) -> np.ndarray:
    """``(S, S, 3)`` frame enlarged ``scale`` times (nearest), face box in red, hands in blue."""
    big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST).copy()
    x0, y0, x1, y1 = (np.asarray(face_box) * scale).round().astype(int)
    cv2.rectangle(big, (x0, y0), (x1, y1), _FACE_COLOUR, 1)
    if hand_mask.any():
        mask = cv2.resize(hand_mask.astype(np.uint8), None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_NEAREST)  # fmt: skip
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(big, contours, -1, _HAND_COLOUR, 1)
    return big


def side_by_side(
    videos: Mapping[str, np.ndarray], truth_pose: np.ndarray, face_box: np.ndarray,
    n_frames: int, tau: float, radius: float, scale: int = 2,
) -> np.ndarray:  # fmt: skip
    """One image: a row per video (ground truth first), ``n_frames`` evenly spaced columns.

    videos: label -> ``(T, S, S, 3)`` uint8, all the same S; truth_pose ``(T, 133, 3)`` in S px.
    """
    length = min(len(v) for v in videos.values())
    picks = np.linspace(0, length - 1, min(n_frames, length)).round().astype(int)
    size = next(iter(videos.values())).shape[1]
    rows = []
    for label, frames in videos.items():
        tiles = []
        for i in picks:
            hands = region_masks(truth_pose[i], size, tau, radius)["hand"]
            tiles.append(outlined(frames[i], face_box, hands, scale))
        row = np.concatenate(tiles, axis=1)
        cv2.putText(row, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
        rows.append(row)
    return np.concatenate(rows, axis=0)


def spectrogram_over_motion(
    wave: np.ndarray,
    sample_rate: int,
    fps: float,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
) -> bytes:
    """Fig. 7: mel spectrogram on top, hand speed and lip opening per video below; PNG bytes.

    curves: label -> ``(hand speed (T,), lip opening (T,))``. The lip panel also draws the
    speech's RMS per frame (grey, its own axis) and labels each video with its ``lip_sync_r``
    (:mod:`pipeline.metrics.lip_sync`): the lines should rise with the grey one.
    """
    import librosa
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    mel = librosa.power_to_db(
        librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_mels=64, hop_length=160),
        ref=np.max,
    )
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [1.3, 1, 1]})  # fmt: skip
    duration = len(wave) / sample_rate
    axes[0].imshow(mel, origin="lower", aspect="auto", extent=(0, duration, 0, mel.shape[0]),
                   cmap="magma")  # fmt: skip
    axes[0].set_ylabel("mel band")
    axes[0].set_title(title)
    n_frames = max((len(speed) for speed, _ in curves.values()), default=0)
    envelope = frame_rms(wave, sample_rate, fps, n_frames)
    speech = axes[2].twinx()
    speech.fill_between(np.arange(n_frames) / fps, envelope, color="0.6", alpha=0.35, lw=0)
    speech.set_ylabel("speech RMS", color="0.4")
    speech.set_yticks([])
    axes[2].set_zorder(speech.get_zorder() + 1)
    axes[2].patch.set_visible(False)
    for label, (speed, lips) in curves.items():
        t = np.arange(len(speed)) / fps
        r = lip_sync_correlation(lips, envelope)
        axes[1].plot(t, speed, label=label, lw=1)
        axes[2].plot(t, lips, label=f"{label}: r = {r:+.2f}" if r is not None else label, lw=1)
    axes[1].set_ylabel("hand speed (px/s)")
    axes[2].set_ylabel("lip opening (px)")
    axes[2].set_xlabel("time (s)")
    axes[1].legend(fontsize=7, loc="upper right")
    axes[2].legend(fontsize=7, loc="upper right", title="lip opening vs speech RMS",
                   title_fontsize=7)  # fmt: skip
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def psnr_by_segment_plot(curves: Mapping[str, Sequence[float | None]], title: str) -> bytes:
    """Whole-frame PSNR against segment index, one line per mode; PNG bytes.

    curves: mode -> mean PSNR (dB) of each segment over the mode's videos, None where no video
    has a value (a gap in the line).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for mode, values in curves.items():
        y = np.array([np.nan if v is None else v for v in values], np.float64)
        ax.plot(np.arange(len(y)), y, marker="o", lw=1.2, label=MODE_LABELS.get(mode, mode))
    ax.set_xlabel("segment index")
    ax.set_ylabel("whole-frame PSNR (dB)")
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if curves:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def report_figures(
    clips: Sequence,
    generated: Mapping[str, Mapping[str, np.ndarray]],
    poses: Mapping[tuple[str, str], np.ndarray],
    params: MetricSettings,
    report_clips: int,
    report_frames: int,
    segment_curves: Mapping[str, Sequence[float | None]] | None = None,
) -> list[tuple[str, str, bytes]]:
    """Frames side by side (``report_frames`` each) for the first ``report_clips`` clips, one
    Fig. 7 plot and, with ``segment_curves``, PSNR against segment index; the region masks and
    keypoint thresholds are the metrics' (``params``).

    clips: :class:`~pipeline.evaluation.evaluate.TestClip`; generated: clip id -> mode -> frames;
    poses: (mode, clip id) -> the poses the metrics read; segment_curves: mode -> mean PSNR per
    segment (:func:`~pipeline.evaluation.evaluate.segment_curves`). Returns ``(stem, caption,
    PNG)``.
    """
    from pipeline.evaluation.evaluate import GROUND_TRUTH, hand_speed, lip_opening

    radius = params.region_radius_at_512 * params.size / 512
    min_score = params.gesture.min_score
    figures = []
    for clip in clips[:report_clips]:
        videos = {MODE_LABELS[GROUND_TRUTH]: clip.frames}
        videos |= {MODE_LABELS[m]: f for m, f in generated[clip.clip_id].items()}
        image = side_by_side(videos, clip.truth_pose, clip.face_box, report_frames,
                             params.region_tau, radius)  # fmt: skip
        caption = f"Frames {clip.clip_id}: ground truth / none / SG / DG"
        figures.append((f"frames_{clip.clip_id}", caption, png_bytes(image)))
    if clips:
        clip = clips[0]
        curves = {
            MODE_LABELS[mode]: (hand_speed(pose, clip.fps, min_score), lip_opening(pose, min_score))
            for (mode, clip_id), pose in poses.items()
            if clip_id == clip.clip_id
        }
        caption = f"{clip.clip_id}: spectrogram over motion (Fig. 7)"
        figures.append((f"fig7_{clip.clip_id}", caption,
                        spectrogram_over_motion(clip.wave, clip.sample_rate, clip.fps, curves,
                                                caption)))  # fmt: skip
    if segment_curves is not None:
        caption = "Long videos: whole-frame PSNR per chained segment (mean over test videos)"
        figures.append(("psnr_by_segment", caption,
                        psnr_by_segment_plot(segment_curves, "PSNR per segment, mean over "
                                             "videos")))  # fmt: skip
    return figures


def png_bytes(image_rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode a PNG")
    return data.tobytes()


def render_report(
    summary: Mapping,
    groups: Mapping[str, Mapping[str, dict]],
    figures: Sequence[tuple[str, str, bytes]],
    notes: Sequence[str],
    timings: Mapping[str, dict],
) -> str:
    """The self-contained HTML report (``report.html.j2``): tables, embedded PNGs, notes.

    summary: the stage's metrics summary (profile, eval size, pose backend, sync and FVD models,
    guidance rate, ``max_drift_db`` if given); groups: group -> mode -> metrics; figures:
    ``(file stem, caption, PNG bytes)`` as :func:`report_figures` makes them; notes: why some
    values are null; timings: mode -> ``{"tc": ...}`` over all clips (the timings file's
    ``modes``), for Table 2's TC.
    """
    sync_name = summary["sync_model"]["metric"]
    modes = groups["all"]
    tables = [
        ("Table 1 layout: quality and alignment (BAS: Bailando's protocol, audio beats to the "
         "nearest motion beat, sigma^2 = 9 frames^2, as the paper cites it)",
         table1_rows(groups, sync_name)),
        ("Table 2 layout: guidance time rate (SG / DG)",
         table2_rows(modes, summary["guidance_rate"], sync_name, timings)),
        ("Region quality against the real frames; hand keypoints (HKC, HKV)", region_rows(modes)),
        ("Lip sync: lip opening against the speech's RMS per frame (Pearson r; Fig. 7 below)",
         lip_sync_rows(modes)),
        ("Long videos: whole-frame PSNR, first vs last quarter (drift = first - last)",
         drift_rows(modes, summary.get("max_drift_db"))),
    ]  # fmt: skip
    source = resources.files("pipeline.evaluation").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             keep_trailing_newline=True)  # fmt: skip
    embedded = [{"caption": caption, "png_base64": base64.b64encode(data).decode()}
                for _, caption, data in figures]  # fmt: skip
    return env.from_string(source).render(
        summary=summary,
        tables=[{"title": t, "header": h, "rows": r} for t, (h, r) in tables],
        notes=list(notes),
        figures=embedded,
    )


def write_report(
    path: str | Path,
    summary: Mapping,
    groups: Mapping[str, Mapping[str, dict]],
    figures: Sequence[tuple[str, str, bytes]],
    notes: Sequence[str],
    timings: Mapping[str, dict],
) -> None:
    """Write :func:`render_report`'s HTML to ``path`` atomically."""
    html = render_report(summary, groups, figures, notes, timings)
    with atomic_file(path) as tmp:
        tmp.write_text(html, encoding="utf-8")


__all__ = [
    "MODE_LABELS", "TEMPLATE", "drift_rows", "outlined", "png_bytes", "psnr_by_segment_plot",
    "region_rows", "render_report", "report_figures", "side_by_side", "spectrogram_over_motion",
    "table1_rows", "table2_rows", "write_report",
]  # fmt: skip

"""The dataset release (``paha export``): the curated corpus as a folder others can load.

What the paper promises for CNAS. ``export_dataset`` reads a finished run's ``curate`` and
``extract`` outputs and writes, under ``out`` (built in a temporary folder, then renamed)::

    README.md                      datasheet: Hugging Face dataset-card YAML header + prose
    clips/<split>/<clip_id>.mp4    the curated clip (video, constant frame rate, square)
    clips/<split>/<clip_id>.wav    its speech, 16 kHz mono
    data/<split>/clips.parquet     one row per clip: ids, speaker, language, source, timing,
                                   file paths (relative to the folder), the curation measurements
    data/<split>/poses.parquet     one row per frame: 133 COCO-WholeBody keypoints (x, y, score)
                                   flattened to 399 floats, in clip pixels
    data/<split>/faces.parquet     one row per frame: face box x0, y0, x1, y1 and score
    rejected.csv                   every clip not exported, with its reasons

A clip is exported when ``curate`` kept it and ``extract`` succeeded on it; every other clip is
a row of ``rejected.csv`` (cut, filter, reviewer or extraction reasons). The card lists counts and
hours per speaker and split, every filter with its thresholds and how many clips it rejected,
the reviewer's overrides that were applied, and the sources and licence from ``export`` params.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from pipeline.config import Params
from pipeline.curation.decisions import reason_category
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory

# Filter (reason category) -> the `curate` thresholds it applies, in the report's order.
FILTER_THRESHOLDS: dict[str, tuple[str, ...]] = {
    "duration": ("min_duration_s", "max_duration_s"),
    "too_short": ("min_frames",),
    "scene_cuts": ("scene_cut_threshold", "max_scene_cuts"),
    "camera_motion": ("max_camera_motion",),
    "camera_zoom": ("max_camera_zoom",),
    "frozen": ("min_frame_change",),
    "face_missing": ("min_face_ratio",),
    "face_unstable": ("max_face_jitter",),
    "body_missing": ("min_body_ratio",),
    "silence": ("silence_db", "max_silence_ratio"),
    "clipping": ("max_clipping_ratio",),
    "snr": ("min_snr_db",),
}
MEASUREMENTS = ("duration_s", "scene_cuts", "camera_motion", "camera_zoom", "frame_change",
                "face_ratio", "face_jitter", "body_ratio", "silence_ratio", "clipping_ratio",
                "snr_db")  # fmt: skip
RELEASE_CLIPS = pa.schema(
    [("clip_id", pa.string()), ("video_id", pa.string()), ("speaker", pa.string()),
     ("language", pa.string()), ("source", pa.string()), ("split", pa.string()),
     ("video", pa.string()), ("audio", pa.string()), ("start_s", pa.float64()),
     ("end_s", pa.float64()), ("fps", pa.float64()), ("n_frames", pa.int32()),
     ("width", pa.int32()), ("height", pa.int32()), ("sample_rate", pa.int32()),
     ("pose_backend", pa.string()),
     *[(name, pa.int32() if name == "scene_cuts" else pa.float64()) for name in MEASUREMENTS]]
)  # fmt: skip
RELEASE_POSES = pa.schema(
    [("clip_id", pa.string()), ("frame", pa.int32()), ("keypoints", pa.list_(pa.float32()))]
)


@dataclass
class Release:
    """What :func:`export_dataset` wrote: the folder, the exported and the rejected clips."""

    out: Path
    exported: pd.DataFrame
    rejected: pd.DataFrame
    card: str


def _size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``n`` examples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):  # fmt: skip
        if n < limit:
            return name
    return "n>1M"


def _exportable(curated: pd.DataFrame, status: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(exported, rejected)``: kept clips extracted ok, and every other clip with reasons."""
    extract = status.set_index("clip_id")
    rows_out, rejected = [], []
    for row in curated.to_dict("records"):
        reasons = [str(r) for r in row["reasons"]]
        if row["kept"]:
            if row["clip_id"] not in extract.index:
                reasons = ["extract: no row for this clip"]
            elif extract.at[row["clip_id"], "status"] != "ok":
                reasons = [f"extract: {extract.at[row['clip_id'], 'reason']}"]
        if row["kept"] and not reasons:
            rows_out.append(row)
        else:
            rejected.append({"clip_id": row["clip_id"], "speaker": row["speaker"],
                             "source": row["source"], "override": row["override"],
                             "reasons": "; ".join(reasons) or "rejected"})  # fmt: skip
    columns = ["clip_id", "speaker", "source", "override", "reasons"]
    return pd.DataFrame(rows_out), pd.DataFrame(rejected, columns=columns)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows it (a release of thousands of hours should not
    double the disk), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_dataset(params: Params, root: str | os.PathLike, out: str | os.PathLike,
                   curated_path: str = "data/curated/clips.parquet",
                   features_dir: str = "data/features") -> Release:  # fmt: skip
    """Write the release folder ``out`` from a finished run under ``root`` (see module doc).

    Raises InputError naming the table when the run has no curated or extracted tables, or no
    clip to export.
    """
    root, out = Path(root), Path(out)
    curated = tables.read_table(root / curated_path, tables.CURATED)
    features = root / features_dir
    status = tables.read_table(features / "extract.parquet", tables.EXTRACT)
    exported, rejected = _exportable(curated, status)
    if exported.empty:
        raise InputError(f"{root / curated_path}: no kept clip with extracted features to export")
    pose = tables.read_table(features / "pose.parquet", tables.POSE)
    faces = tables.read_table(features / "faces.parquet", tables.FACES)
    backends = pose.groupby("clip_id")["backend"].first()
    with atomic_directory(out) as tmp:
        rows = []
        for row in exported.to_dict("records"):
            split = row["split"]
            folder = tmp / "clips" / split
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"clips/{split}/{row['clip_id']}"
            video, audio = f"{stem}.mp4", f"{stem}.wav"
            _link_or_copy(root / row["path"], tmp / video)
            _link_or_copy(root / row["audio_path"], tmp / audio)
            rows.append(row | {"video": video, "audio": audio,
                               "pose_backend": backends.get(row["clip_id"], "")})  # fmt: skip
        release = pd.DataFrame(rows)
        for split, group in release.groupby("split"):
            ids = set(group["clip_id"])
            (tmp / "data" / split).mkdir(parents=True)
            tables.write_table(group, tmp / "data" / split / "clips.parquet", RELEASE_CLIPS)
            tables.write_table(pose[pose["clip_id"].isin(ids)], tmp / "data" / split /
                               "poses.parquet", RELEASE_POSES)  # fmt: skip
            tables.write_table(faces[faces["clip_id"].isin(ids)], tmp / "data" / split /
                               "faces.parquet", tables.FACES)  # fmt: skip
        rejected.to_csv(tmp / "rejected.csv", index=False)
        card = dataset_card(params, release, rejected, curated)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return Release(out, release, rejected, card)


# ---------------------------------------------------------------------------------- the card
def clip_hours(frame: pd.DataFrame) -> float:
    return float((frame["n_frames"] / frame["fps"]).sum() / 3600)


def _filter_rows(params: Params, curated: pd.DataFrame) -> list[dict[str, Any]]:
    """Per filter: its thresholds (name = value) and the clips with a reason of its category."""
    counts: Counter[str] = Counter()
    for reasons in curated["reasons"]:
        counts.update({reason_category(str(r)) for r in reasons})
    curate = params.curate
    rows = []
    for category, names in FILTER_THRESHOLDS.items():
        present = [n for n in names if hasattr(curate, n)]
        if not present:
            continue
        thresholds = ", ".join(f"`{n}` = {getattr(curate, n)}" for n in present)
        rows.append({"filter": category, "thresholds": thresholds, "rejected": counts[category]})
    for category in ("unreadable", "reviewer", "other"):
        if counts[category]:
            rows.append({"filter": category, "thresholds": "-", "rejected": counts[category]})
    return rows


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def dataset_card(params: Params, release: pd.DataFrame, rejected: pd.DataFrame,
                 curated: pd.DataFrame) -> str:  # fmt: skip
    """The datasheet ``README.md``: a Hugging Face dataset-card YAML header, then the counts,
    filters, overrides, sources and layout (markdown)."""
    meta = params.export
    splits = sorted(release["split"].unique())
    configs = [{"config_name": name, "default": name == "clips",
                "data_files": [{"split": s, "path": f"data/{s}/{name}.parquet"} for s in splits]}
               for name in ("clips", "poses", "faces")]  # fmt: skip
    header = {
        "pretty_name": meta.pretty_name, "license": meta.license,
        "language": sorted(release["language"].unique()),
        "size_categories": [_size_category(len(release))],
        "task_categories": ["other"], "tags": list(meta.tags),
        "source_datasets": list(meta.source_datasets), "configs": configs,
    }  # fmt: skip
    speakers = []
    for (speaker, split), group in release.groupby(["speaker", "split"]):
        speakers.append({"speaker": speaker, "split": split, "source": group["source"].iloc[0],
                         "language": group["language"].iloc[0], "clips": len(group),
                         "hours": f"{clip_hours(group):.4f}"})  # fmt: skip
    totals = [{"split": s, "clips": int((release["split"] == s).sum()),
               "hours": f"{clip_hours(release[release['split'] == s]):.4f}",
               "speakers": int(release.loc[release["split"] == s, "speaker"].nunique())}
              for s in splits]  # fmt: skip
    overrides = curated[curated["override"] != ""]
    override_rows = [{"clip": r.clip_id, "decision": r.override, "note": r.note or "-"}
                     for r in overrides.itertuples()]  # fmt: skip
    sources = [{"source": s.name, "kind": s.kind,
                "clips": int((release["source"] == s.name).sum())}
               for s in params.corpus.resolved_sources()]  # fmt: skip
    reasons = [{"clip": r.clip_id, "speaker": r.speaker, "reasons": r.reasons}
               for r in rejected.itertuples()]  # fmt: skip
    backend = ", ".join(sorted(set(release["pose_backend"]) - {""})) or "-"
    body = [
        f"# {meta.pretty_name}", "", meta.description.strip(), "",
        f"Licence: **{meta.license}**. {meta.license_note.strip()}".rstrip(), "",
        f"Exported by `paha export` from a run of the PAHA pipeline: {len(release)} clips "
        f"({clip_hours(release):.4f} h), {len(rejected)} clips not exported (listed below and in "
        "`rejected.csv`).", "",
        "## Splits", "", _table(totals, ["split", "clips", "hours", "speakers"]), "",
        "## Speakers", "", _table(speakers, ["speaker", "split", "source", "language", "clips",
                                             "hours"]), "",
        "## Sources", "", _table(sources, ["source", "kind", "clips"]), "",
        "## Curation filters (Appendix C)", "",
        "Each filter's thresholds are the run's `curate` params; `rejected` counts the clips with "
        "a reason of that filter (a clip can fail several).", "",
        _table(_filter_rows(params, curated), ["filter", "thresholds", "rejected"]), "",
        "## Reviewer overrides applied", "",
        _table(override_rows, ["clip", "decision", "note"]) if override_rows else "None.", "",
        "## Clips not exported", "",
        _table(reasons, ["clip", "speaker", "reasons"]) if reasons else "None.", "",
        "## Files", "",
        "- `clips/<split>/<clip_id>.mp4`: the clip (video only, constant frame rate, square); "
        "`clips/<split>/<clip_id>.wav`: its speech, 16 kHz mono.",
        "- `data/<split>/clips.parquet`: one row per clip (speaker, language, source, timing, "
        "file paths relative to this folder, curation measurements).",
        f"- `data/<split>/poses.parquet`: one row per frame, 133 COCO-WholeBody keypoints "
        f"(x, y in clip pixels, score) as 399 floats; pose backend: {backend}.",
        "- `data/<split>/faces.parquet`: one row per frame, face box `x0, y0, x1, y1` (clip "
        "pixels) and `score` (NaN box, score 0: no face).", "",
        "## Loading", "",
        "```python",
        "import pandas as pd",
        "clips = pd.read_parquet('data/train/clips.parquet')",
        "from datasets import load_dataset",
        "poses = load_dataset('parquet', data_files={'train': 'data/train/poses.parquet'})",
        "```", "",
    ]  # fmt: skip
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" \
        + "\n".join(body)  # fmt: skip

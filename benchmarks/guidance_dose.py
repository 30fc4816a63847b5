"""Guidance dose-response (Tables 5-7 at sample scale): does a classifier's guidance raise what
that classifier measures, and what does it do to the video?

For each classifier (``face``, ``nonface``) alone, its weight at ``x0 / x1 / x10 / x100`` of
the profile's (``infer.lambda_face`` / ``infer.lambda_nonface``; the other weight 0), SG
generates every test clip (its first frame, its audio, ``infer.seed`` noise; the same noise in
every arm). ``--audio-cfg S ...`` adds audio classifier-free guidance alone at each scale (no
classifier), ``--compare`` the profile's SG and DG, so that the three kinds of guidance sit in
one table with their time cost. Each video is scored by:

- ``face_score`` / ``nonface_score``: each classifier's sync probability ``s`` on the final
  (clean, ``t = 0``) latents, per segment window as guidance sees them, mean over windows and
  clips; ``own_score`` is the guided classifier's;
- ``lip_sync_r`` (and ``lip_sync_r_swapped``): ``evaluate``'s lip-sync correlation on the
  decoded frames (:mod:`pipeline.metrics.lip_sync`, ``evaluate.size``, ``evaluate.pose_backend``);
- ``psnr_face`` / ``psnr_hand``: ``evaluate``'s region PSNR against the real frames, and
  ``psnr_to_unguided``: whole-frame PSNR to the unguided video (how far guidance moved it);
- ``seconds_per_segment``: sampling time per segment (TC).

Frames come straight from the VAE decoder; ``evaluate`` reads ``infer``'s H.264 mp4s, so its
figures for the same video differ a little (about 0.2 dB of face PSNR on the sample profile).

Run in a repository after ``dvc repro train_classifier``; writes a JSON and a plot:

    python -m benchmarks.guidance_dose --out benchmarks/results/guidance_dose.json \
        --plot docs/images/guidance_dose.png [--audio-cfg 0 1 2 4 --compare]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.builders.evaluation import metric_settings
from pipeline.builders.inference import animator_settings
from pipeline.config import load_params
from pipeline.data.face_boxes import apply_region, face_mask
from pipeline.data.segments import segment_starts
from pipeline.data.windows import resize_frames
from pipeline.evaluation.evaluate import load_test_clips, region_quality
from pipeline.features.pose.build import build_pose_backend
from pipeline.inference.animator import clip_seed
from pipeline.inference.generate import ModelFolders, load_test_records, reference_face_boxes
from pipeline.io import tables
from pipeline.io.media import read_frames
from pipeline.io.outputs import write_json
from pipeline.metrics.lip_sync import lip_sync
from pipeline.metrics.psnr import psnr
from pipeline.models.device import resolve_device

KINDS = ("face", "nonface")
WEIGHT_KEY = {"face": "lambda_face", "nonface": "lambda_nonface"}


@torch.no_grad()
def sync_probability(classifier, latents: torch.Tensor, audio: torch.Tensor,
                     region: torch.Tensor, window: int) -> float:  # fmt: skip
    """Mean ``s = sigmoid(logit)`` of ``classifier`` on clean latents ``(L, C, h, w)`` with
    clean audio ``(L, A)``, over the segment windows of ``window`` frames (what guidance sees);
    ``region``: ``(h, w)`` the classifier's input area."""
    starts = segment_starts(len(latents), window)
    total = starts[-1] + window
    index = torch.arange(total).clamp(max=len(latents) - 1)
    z, a = latents[index], audio[index]
    z = torch.stack([z[s : s + window] for s in starts])
    a = torch.stack([a[s : s + window] for s in starts])
    device = next(classifier.parameters()).device
    z, a = z.to(device), a.to(device)
    regions = region[None].expand(len(starts), -1, -1).to(device)
    t = torch.zeros(len(starts), dtype=torch.long, device=device)
    logits = classifier(apply_region(z, regions), t, a, region=regions)
    return float(torch.sigmoid(logits.float()).mean())


def _arms(base, kinds, multipliers, cfg_scales, compare) -> list[dict]:
    """What to generate: each classifier alone at every multiplier of its profile weight (SG),
    audio CFG alone at every scale (no classifier guidance), and with ``compare`` the profile's
    SG and DG, as ``{"kind", "multiplier", "mode", "weights", "audio_cfg"}``."""
    zero = dataclasses.replace(base, lambda_face=0.0, lambda_nonface=0.0, lambda_diff=0.0)
    arms = []
    for kind in kinds:
        key = WEIGHT_KEY[kind]
        for multiplier in sorted(multipliers):
            weights = dataclasses.replace(zero, mode="sg",
                                          **{key: multiplier * getattr(base, key)})  # fmt: skip
            arms.append({"kind": kind, "multiplier": multiplier, "mode": "sg",
                         "weights": weights, "audio_cfg": 0.0})  # fmt: skip
    for scale in sorted(cfg_scales):
        arms.append(
            {
                "kind": "audio_cfg",
                "multiplier": scale,
                "mode": "none",
                "weights": dataclasses.replace(zero, mode="none"),
                "audio_cfg": scale,
            }
        )
    if compare:
        for mode in ("sg", "dg"):
            arms.append(
                {
                    "kind": mode,
                    "multiplier": 1.0,
                    "mode": mode,
                    "weights": dataclasses.replace(base, mode=mode),
                    "audio_cfg": 0.0,
                }
            )
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", default="data/curated/clips.parquet")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--models", default="data/models")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--multipliers", nargs="+", type=float, default=[0, 1, 10, 100])
    parser.add_argument(
        "--audio-cfg",
        nargs="*",
        type=float,
        default=[],
        help="audio CFG scales to run alone (needs train_univdm.audio_dropout)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="also the profile's SG and DG (the equal-cost table)"
    )
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="noise seed (infer.seed)")
    parser.add_argument("--out", default="benchmarks/results/guidance_dose.json")
    parser.add_argument("--plot", default=None, help="PNG of the curves")
    args = parser.parse_args()
    params = load_params(args.params)
    seed = params.infer.seed if args.seed is None else args.seed
    device = resolve_device(params.runtime.device)
    records = load_test_records(args.clips, args.features, args.max_clips)
    boxes = reference_face_boxes(args.features, records)
    curated = tables.read_table(args.clips, tables.CURATED).set_index("clip_id")
    evaluation = params.evaluate
    metrics = metric_settings(evaluation, params.train_gesture_ae)
    clips = {c.clip_id: c for c in load_test_clips(records, boxes, curated["language"].to_dict(),
                                                  evaluation.size, params.cut.fps)}  # fmt: skip
    read_pose = build_pose_backend(
        evaluation.pose_backend, dwpose_dir=params.extract.dwpose_dir
    ).estimate
    settings = animator_settings(params)
    animator = ModelFolders.under(args.models, "sg").load(settings, device)
    classifiers = animator.classifiers
    base = settings.guidance
    results = {"params": args.params, "seed": seed, "clips": len(records),
               "machine": platform.processor() or platform.machine(),
               "base_weights": {k: getattr(base, WEIGHT_KEY[k]) for k in KINDS},
               "rows": []}  # fmt: skip
    unguided: dict[str, np.ndarray] = {}  # clip -> frames with no guidance of any kind
    arms = _arms(base, args.kinds, args.multipliers, args.audio_cfg, args.compare)

    def unguided_arm(arm: dict) -> bool:  # no guidance of any kind: the reference videos
        return arm["multiplier"] == 0 and arm["kind"] in (*KINDS, "audio_cfg")

    if not any(unguided_arm(a) for a in arms):
        arms.insert(0, _arms(base, [], [], [0.0], False)[0])
    for arm in arms:
        animator.settings = dataclasses.replace(settings, guidance=arm["weights"],
                                                audio_cfg=arm["audio_cfg"])  # fmt: skip
        started = time.perf_counter()
        per_clip, seconds, segments = [], 0.0, 0
        for record in records:
            clip = clips[record.clip_id]
            # The reference as `infer` takes it: the clip's first frame at the training size.
            first = resize_frames(read_frames(record.path, [0]), settings.size)[0]
            result = animator.generate(first, boxes[record.clip_id], record.audio, arm["mode"],
                                       clip_seed(seed, record.clip_id))  # fmt: skip
            seconds, segments = seconds + result.seconds, segments + result.segments
            latents = result.latents
            audio = torch.from_numpy(np.asarray(record.audio, np.float32))
            mask = face_mask(boxes[record.clip_id], latents.shape[-1], settings.face_dilation)
            scores = {k: sync_probability(classifiers[k], latents, audio,
                                          mask if k == "face" else 1.0 - mask,
                                          animator.model.config.frames)
                      for k in KINDS}  # fmt: skip
            frames = resize_frames(result.frames, evaluation.size)
            n = min(len(frames), len(clip.frames))
            pose = read_pose(frames[:n])
            lips = lip_sync(pose, clip.wave, clip.sample_rate, clip.fps,
                            evaluation.pose_min_score, clip.control_wave)  # fmt: skip
            quality = region_quality(frames[:n], clip.frames[:n], clip.truth_pose[:n],
                                     metrics)  # fmt: skip
            is_reference = unguided_arm(arm)
            if is_reference:
                unguided.setdefault(record.clip_id, frames[:n])
            reference = unguided.get(record.clip_id)
            per_clip.append({
                "clip_id": record.clip_id, "face_score": scores["face"],
                "nonface_score": scores["nonface"], **lips,
                "psnr_face": quality["psnr_face"], "psnr_hand": quality["psnr_hand"],
                "psnr_to_unguided": None if reference is None or is_reference
                else float(psnr(frames[:n], reference)),
            })  # fmt: skip
        row = {key: arm[key] for key in ("kind", "multiplier", "mode", "audio_cfg")}
        row |= {"lambda_face": arm["weights"].lambda_face,
                "lambda_nonface": arm["weights"].lambda_nonface,
                "lambda_diff": arm["weights"].lambda_diff,
                "seconds_per_segment": round(seconds / max(segments, 1), 3),
                "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        for key in ("face_score", "nonface_score", "lip_sync_r", "lip_sync_r_swapped",
                    "psnr_face", "psnr_hand", "psnr_to_unguided"):  # fmt: skip
            values = [c[key] for c in per_clip if c[key] is not None]
            row[key] = round(float(np.mean(values)), 4) if values else None
        row["own_score"] = row.get(f"{arm['kind']}_score")
        row["clips"] = per_clip
        results["rows"].append(row)
        print(f"{arm['kind']:9s} x{arm['multiplier']:<5g} face s {row['face_score']}  nonface s "
              f"{row['nonface_score']}  lip r {row['lip_sync_r']} (swapped "
              f"{row['lip_sync_r_swapped']})  face PSNR {row['psnr_face']}  to unguided "
              f"{row['psnr_to_unguided']}  TC {row['seconds_per_segment']} s",
              flush=True)  # fmt: skip
        write_json(results, args.out)
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: str | Path) -> None:
    """Own score, lip_sync_r and face PSNR against the weight multiplier, one line per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("own_score", "guided classifier's sync s"), ("lip_sync_r", "lip_sync_r"),
              ("psnr_face", "face PSNR (dB)")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.2))
    for kind in (*KINDS, "audio_cfg"):
        rows = [r for r in results["rows"] if r["kind"] == kind]
        if not rows:
            continue
        x = [max(r["multiplier"], 0.1) for r in rows]  # x0 drawn at 0.1 on the log axis
        for ax, (key, label) in zip(axes, panels, strict=True):
            values = [r[key] for r in rows]
            if key == "own_score" and kind == "audio_cfg":  # no classifier of its own
                continue
            ax.plot(x, [np.nan if v is None else v for v in values], marker="o",
                    label=f"{kind} guidance" if kind in KINDS else "audio CFG scale")  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("weight / profile's, or CFG scale (0 drawn at 0.1)")
            ax.set_ylabel(label)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("SG dose-response, one classifier at a time (sample profile, test clips)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""How much lip sync survives the VAE: the ceiling of any generator that works in its latents.

Each real test clip, at ``evaluate.size``, is encoded and decoded by a trained VAE and read by
``evaluate``'s pose reader; ``lip_sync_r`` (:mod:`pipeline.metrics.lip_sync`) of the real
frames and of their reconstructions, per clip and on average. A generator whose latents were
perfect could not do better than the reconstructions. Run in a repository after ``dvc repro
train_vae`` (``--vae`` more than once compares VAEs):

    python -m benchmarks.vae_lip_ceiling --vae data/models/vae [--vae other/vae ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from pipeline.config import load_params
from pipeline.evaluation.evaluate import load_test_clips
from pipeline.features.pose.build import build_pose_backend
from pipeline.inference.generate import load_test_records, reference_face_boxes
from pipeline.io import tables
from pipeline.metrics.lip_sync import lip_sync
from pipeline.metrics.psnr import psnr
from pipeline.models.vae import reconstruct_frames, resolve_vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", default="data/curated/clips.parquet")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--vae", action="append", default=None, help="VAE folder (repeatable)")
    args = parser.parse_args()
    params = load_params(args.params)
    evaluation = params.evaluate
    records = load_test_records(args.clips, args.features)
    boxes = reference_face_boxes(args.features, records)
    languages = tables.read_table(args.clips, tables.CURATED).set_index("clip_id")["language"]
    clips = load_test_clips(records, boxes, languages.to_dict(), evaluation.size, params.cut.fps)
    read_pose = build_pose_backend(evaluation.pose_backend,
                                   dwpose_dir=params.extract.dwpose_dir).estimate  # fmt: skip

    def lips(frames, clip) -> dict:
        return lip_sync(read_pose(frames), clip.wave, clip.sample_rate, clip.fps,
                        evaluation.pose_min_score, clip.control_wave)  # fmt: skip

    real = {clip.clip_id: lips(clip.frames, clip) for clip in clips}
    print(f"{len(clips)} test clips at {evaluation.size} px; lip_sync_r (other clip's speech)")
    print("  real frames:      " + _line(real.values()))
    for folder in args.vae or ["data/models/vae"]:
        vae = resolve_vae(folder).eval()
        rows, quality = [], []
        for clip in clips:
            rebuilt = reconstruct_frames(vae, clip.frames)
            rows.append(lips(rebuilt, clip))
            quality.append(psnr(rebuilt, clip.frames))
        print(f"  through {folder} (PSNR {np.mean(quality):.2f} dB): " + _line(rows))
        for clip, row in zip(clips, rows, strict=True):
            print(f"    {clip.clip_id}: {row['lip_sync_r']:+.3f} (real "
                  f"{real[clip.clip_id]['lip_sync_r']:+.3f})")  # fmt: skip


def _line(rows) -> str:
    rows = list(rows)

    def mean(key):
        values = [r[key] for r in rows if r[key] is not None]
        return f"{np.mean(values):+.3f}" if values else "null"

    return f"{mean('lip_sync_r')} ({mean('lip_sync_r_swapped')})"


if __name__ == "__main__":
    main()

"""Region PSNR of a video that does not move: each test clip's first frame repeated.

The reference point for the generated videos' region PSNR (``evaluate``'s protocol: the same
frames at ``evaluate.size``, the same face / hand / body masks of the ground truth's poses). In
the sample corpus which hand beats, and how far, is drawn by a seeded generator, not by the
speech, so a generated hand that moves as plausibly as the real one still lands elsewhere;
this still video sets the bar a generator's hand PSNR has to be read against. Run in a
repository after ``dvc repro extract``:

    python -m benchmarks.still_reference
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.builders.evaluation import metric_settings
from pipeline.config import load_params
from pipeline.data.face_boxes import face_box_at, normalised_face_boxes
from pipeline.data.windows import load_clip_records
from pipeline.evaluation.evaluate import REGIONS, load_test_clips, region_quality
from pipeline.io import tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", default="data/curated/clips.parquet")
    parser.add_argument("--features", default="data/features")
    args = parser.parse_args()
    params = load_params(args.params)
    settings = params.evaluate
    metrics = metric_settings(settings, params.train_gesture_ae)
    records = load_clip_records(args.clips, args.features, "test", min_frames=1)
    curated = tables.read_table(args.clips, tables.CURATED).set_index("clip_id")
    faces = tables.read_table(Path(args.features) / "faces.parquet", tables.FACES)
    boxes = {c: face_box_at(b, 0) for c, b in normalised_face_boxes(faces, records).items()}
    clips = load_test_clips(records, boxes, curated["language"].to_dict(), settings.size,
                            params.cut.fps)  # fmt: skip
    rows = [region_quality(np.repeat(c.frames[:1], len(c.frames), axis=0), c.frames,
                           c.truth_pose, metrics) for c in clips]  # fmt: skip
    print(f"still reference, {len(clips)} test clips:")
    for region in REGIONS:
        values = [r[f"psnr_{region}"] for r in rows if r[f"psnr_{region}"] is not None]
        print(f"  psnr_{region} {np.mean(values):.2f} dB")


if __name__ == "__main__":
    main()

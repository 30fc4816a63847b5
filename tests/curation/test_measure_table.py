"""Clip measurements survive their Parquet table (what a sharded ``curate`` merges)."""

import math

import numpy as np

from pipeline.curation import measure_table
from pipeline.curation.measures import ClipMeasurement, SheetDetections
from pipeline.io import tables


def test_measurements_round_trip_through_parquet(tmp_path):
    rng = np.random.default_rng(0)
    sheet = SheetDetections(frames=np.array([0, 5, 10]), boxes=rng.random((3, 5), np.float32),
                            poses=rng.random((3, 133, 3), np.float32),
                            regions=rng.random((3, 4), np.float32),
                            steps=np.full((3, 3), np.nan, np.float32))  # fmt: skip
    measured = ClipMeasurement(duration_s=3.2, n_frames=80, scene_cuts=1, face_ratio=0.9,
                               face_jitter=math.nan, sheet=sheet)  # fmt: skip
    unreadable = ClipMeasurement(errors=("unreadable: video a.mp4: file not found",))
    frame = measure_table.to_frame(["a", "b"], [measured, unreadable])
    tables.write_table(frame, tmp_path / "m.parquet", measure_table.schema())
    back = measure_table.from_frame(tables.read_table(tmp_path / "m.parquet",
                                                      measure_table.schema()))  # fmt: skip
    a, b = back["a"], back["b"]
    assert (a.duration_s, a.n_frames, a.scene_cuts, a.face_ratio) == (3.2, 80, 1, 0.9)
    assert math.isnan(a.face_jitter) and a.errors == ()
    np.testing.assert_array_equal(a.sheet.frames, sheet.frames)
    np.testing.assert_array_equal(a.sheet.boxes, sheet.boxes)
    np.testing.assert_array_equal(a.sheet.poses, sheet.poses)
    np.testing.assert_array_equal(a.sheet.regions, sheet.regions)
    np.testing.assert_array_equal(a.sheet.steps, sheet.steps)  # NaN where not measured
    bare = SheetDetections(frames=sheet.frames, boxes=sheet.boxes, poses=sheet.poses)
    again = measure_table.from_frame(measure_table.to_frame(["c"], [ClipMeasurement(sheet=bare)]))
    assert again["c"].sheet.regions is None and again["c"].sheet.steps is None
    assert b.sheet is None and b.n_frames is None and math.isnan(b.duration_s)
    assert b.errors == unreadable.errors

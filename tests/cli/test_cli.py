import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.cli.main import main
from pipeline.io import tables
from pipeline.io.media import write_video


def _default(field: pa.Field):
    if pa.types.is_list(field.type):
        return []
    if pa.types.is_string(field.type):
        return ""
    if pa.types.is_boolean(field.type):
        return True
    return 0


def test_par_figure_for_any_clip(tmp_path):
    video = write_video(np.zeros((2, 64, 64, 3), np.uint8), tmp_path / "c.mp4", fps=25.0)
    row = {f.name: _default(f) for f in tables.CURATED} | {"clip_id": "c", "path": str(video)}
    tables.write_table(pd.DataFrame([row]), tmp_path / "clips.parquet", tables.CURATED)
    keypoints = np.zeros((133, 3), np.float32)
    keypoints[100] = (30, 30, 0.95)  # a reliable hand keypoint
    pose = pd.DataFrame([("c", 1, "fake", keypoints.reshape(-1))], columns=tables.POSE.names)
    tables.write_table(pose, tmp_path / "features" / "pose.parquet", tables.POSE)
    out = tmp_path / "fig.png"
    argv = ["par-figure", "c", "--frame", "1", "--out", str(out), "--clips",
            str(tmp_path / "clips.parquet"), "--features", str(tmp_path / "features")]  # fmt: skip
    assert main(argv) == 0 and out.read_bytes()[:4] == b"\x89PNG"
    assert main(argv[:2] + ["--frame", "5"] + argv[4:]) == 2  # no pose for that frame

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


def test_paha_stage_runs_outside_the_repository(tmp_path):
    """`stages/` ships in the package: `paha stage NAME` works from any folder."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    paha = shutil.which("paha", path=str(Path(sys.executable).parent))
    assert paha, "the `paha` console script is installed with the package"
    result = subprocess.run([paha, "stage", "cut", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Stage ``cut``" in result.stdout


def test_a_stage_bug_gives_a_traceback_and_bad_input_one_line(tmp_path):
    """Input errors exit 2 with one line; anything else propagates with its traceback."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "stages.cut", "--raw", str(tmp_path / "no.parquet"),
            "--out", str(tmp_path / "clips"), "--metrics", str(tmp_path / "m.json")]  # fmt: skip
    missing = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in missing.stderr

    from pipeline.io.tables import TableError
    from stages.common import run_stage, stage_parser

    def bad_input(args, params):
        raise TableError("clips.parquet: column kept missing")

    def bug(args, params):
        raise np.linalg.LinAlgError("shape bug")  # a ValueError subclass, but not an input error

    assert run_stage(bad_input, stage_parser("x"), []) == 2
    try:
        run_stage(bug, stage_parser("x"), [])
    except np.linalg.LinAlgError:
        pass
    else:
        raise AssertionError("a bug must propagate with its traceback")

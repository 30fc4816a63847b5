"""Timings files: seconds rounded to significant digits, written atomically, numbers only."""

import json

import pytest

from pipeline.io.timings import rounded, write_timings


def test_rounded_keeps_four_significant_digits_at_any_scale():
    assert rounded(1234.5678) == 1235.0
    assert rounded(12.345678) == 12.35
    assert rounded(0.0012345678) == 0.001235
    assert rounded(0) == 0 and rounded(None) is None
    assert rounded(-0.5) == -0.5


def test_write_timings_writes_rounded_seconds_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "timings" / "train_univdm.json"
    assert write_timings(path, seconds_this_run=812.4321, seconds_per_step=None) == path
    assert json.loads(path.read_text()) == {"seconds_per_step": None, "seconds_this_run": 812.4}
    assert [p.name for p in path.parent.iterdir()] == ["train_univdm.json"]


@pytest.mark.parametrize("value", ["12.0", True, [1.0]])
def test_write_timings_rejects_what_is_not_a_number(tmp_path, value):
    with pytest.raises(TypeError, match="seconds_this_run"):
        write_timings(tmp_path / "t.json", seconds_this_run=value)
    assert not (tmp_path / "t.json").exists()


def test_write_timings_rejects_nan_and_infinity(tmp_path):
    with pytest.raises(ValueError, match="seconds_per_pair"):
        write_timings(tmp_path / "t.json", seconds_per_pair=float("nan"))
    with pytest.raises(ValueError, match="seconds_per_pair"):
        write_timings(tmp_path / "t.json", seconds_per_pair=float("inf"))

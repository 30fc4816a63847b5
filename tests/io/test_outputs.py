import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io.outputs import (
    atomic_directory,
    final_path,
    remove_stale_temporaries,
    replace_directory,
    write_json,
)
from pipeline.io.pool import map_ordered, worker_state


def test_atomic_directory_replaces_only_on_success(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("previous artifact")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "half.txt").write_text("half-written")
        raise RuntimeError("killed mid-write")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left
    with atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
        assert final_path(tmp / "new.txt", tmp, final) == str(final / "new.txt")
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_write_json_is_sorted_and_rejects_nan(tmp_path):
    write_json({"b": 1, "a": [1.5]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1.5], "b": 1}
    with pytest.raises(ValueError):
        write_json({"x": float("nan")}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def _init(offset):
    return {"offset": offset}


def _add(value):
    return value + worker_state["offset"]


@pytest.mark.parametrize("workers", [1, 2])
def test_map_ordered_keeps_order_and_worker_state(workers):
    assert map_ordered(_add, range(7), workers=workers, initializer=_init,
                       initargs=(10,)) == list(range(10, 17))  # fmt: skip


def _numba_cache_entries(_item):
    """The numba cache files a worker finds when it starts (before it imports librosa)."""
    return sorted(p.name for p in Path(os.environ["NUMBA_CACHE_DIR"]).rglob("*.nbi"))


def test_map_ordered_fills_librosa_numba_cache_before_workers_start(tmp_path):
    # Two workers compiling librosa's gufuncs at once can write a mismatched cache pair that
    # segfaults later runs (numba#10128): the parent must have compiled them first. A fresh
    # process, because numba reads NUMBA_CACHE_DIR once, at import.
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    script = ("from pipeline.io.pool import map_ordered\n"
              "from tests.io.test_outputs import _numba_cache_entries\n"
              "print(repr(map_ordered(_numba_cache_entries, range(2), workers=2)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = eval(done.stdout.strip().splitlines()[-1])
    for entries in seen:  # each worker found the parent's peak_pick gufunc, both halves
        assert any(e.startswith("utils.__peak_pick") for e in entries), entries
        assert any(e.startswith("guf-utils.__peak_pick") for e in entries), entries


def test_atomic_directory_removes_what_a_killed_writer_left(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a finished, reaped process: its pid is no longer alive
    stale = tmp_path / f".out.tmp-{dead.pid}"
    (stale / "half").mkdir(parents=True)
    mine = tmp_path / f".out.tmp-{os.getpid()}-other"  # not a pid suffix: kept
    mine.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "done").write_text("1")
    assert not stale.exists() and mine.exists() and (tmp_path / "out" / "done").exists()


def test_replace_directory_swaps_a_folder_in_and_keeps_nothing_aside(tmp_path):
    final, new = tmp_path / "sheets", tmp_path / ".sheets.building"
    final.mkdir()
    (final / "old.png").write_text("old")
    new.mkdir()
    (new / "new.png").write_text("new")
    assert replace_directory(new, final) == final
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheets"]
    fresh = tmp_path / ".fresh.tmp"
    fresh.mkdir()
    replace_directory(fresh, tmp_path / "absent")  # nothing to move aside
    assert (tmp_path / "absent").is_dir() and not fresh.exists()


def test_a_writer_killed_between_the_two_renames_gets_the_old_folder_back(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    old = tmp_path / f".out.old-{dead.pid}"  # `out` was moved aside, the new one never came
    old.mkdir()
    (old / "previous").write_text("1")
    remove_stale_temporaries(tmp_path / "out")
    assert (tmp_path / "out" / "previous").exists() and not old.exists()
    again = tmp_path / f".out.old-{dead.pid}"  # with `out` present, a leftover is removed
    again.mkdir()
    remove_stale_temporaries(tmp_path / "out")
    assert not again.exists() and (tmp_path / "out" / "previous").exists()

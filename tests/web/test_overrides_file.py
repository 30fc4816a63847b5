"""The overrides CSV writer: the format ``curate`` reads, one line per clip, and no decision
lost when reviewers (threads or processes) write at once."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from pipeline.curation.overrides import OverridesError, read_overrides
from pipeline.web.overrides_file import lock_path, record_decision


def test_set_change_and_clear_decisions(tmp_path):
    path = tmp_path / "data" / "overrides.csv"
    record_decision(path, "a", "reject", "blurry,\n  dark")  # a comma and a line break
    record_decision(path, "b", "KEEP", "")
    now = record_decision(path, "a", "keep", "fine after all")
    assert path.read_text() == "clip_id,decision,note\na,keep,fine after all\nb,keep,\n"
    assert [(o.clip_id, o.decision, o.line) for o in now.values()] == [
        ("a", "keep", 2), ("b", "keep", 3),
    ]  # fmt: skip
    record_decision(path, "c", "reject", 'said "no", twice')
    assert read_overrides(path)["c"].note == 'said "no", twice'
    after = record_decision(path, "a", None)
    assert list(after) == ["b", "c"]
    assert record_decision(path, "zz", None) == after  # clearing an absent clip changes nothing
    # Nothing but the CSV and the git-ignored lock is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == [lock_path(path).name, path.name]
    assert lock_path(path).name == ".overrides.csv.tmp-lock"


def test_bad_decisions_and_a_malformed_file_are_refused(tmp_path):
    path = tmp_path / "overrides.csv"
    with pytest.raises(OverridesError, match="'maybe' for 'a' is not one of"):
        record_decision(path, "a", "maybe")
    with pytest.raises(OverridesError, match="empty clip_id"):
        record_decision(path, "  ", "keep")
    path.write_text("clip_id,decision\nx,later\n")
    with pytest.raises(OverridesError, match="line 2"):
        record_decision(path, "a", "keep")
    assert path.read_text() == "clip_id,decision\nx,later\n"  # left for a person to fix


def _decide_many(args):
    path, worker, count = args
    for k in range(count):
        record_decision(path, f"p{worker}-{k}", "reject" if k % 2 else "keep", f"worker {worker}")


def test_reviewers_at_once_lose_nothing(tmp_path):
    """Processes and threads rewriting the file at the same time: every decision lands."""
    path = tmp_path / "overrides.csv"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        jobs = pool.map_async(_decide_many, [(path, w, 15) for w in range(4)])
        threads = [threading.Thread(target=_decide_many, args=((path, 10 + t, 15),))
                   for t in range(3)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        jobs.get(timeout=120)
    overrides = read_overrides(path)
    assert len(overrides) == 7 * 15
    assert overrides["p12-7"].decision == "reject" and overrides["p2-4"].note == "worker 2"

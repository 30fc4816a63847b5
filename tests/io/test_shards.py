"""Shards: atomic and plan-tagged, kept when complete, merged in plan order or refused by name."""

import json

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.errors import InputError, MissingInputError
from pipeline.io import shards as sh
from pipeline.io import tables

SCHEMA = pa.schema([("item", pa.string()), ("status", pa.string()), ("value", pa.int64())])
ITEMS = ["c", "a", "d", "b", "e"]  # plan order (not sorted: the merge must follow it)


def _filler(calls: list, fail: set = frozenset()):
    def make(shard: int, shards: int):
        def fill(tmp, folder):
            calls.append((shard, shards))
            (tmp / "payload.txt").write_text("done")
            rows = [{"item": item, "status": "failed" if item in fail else "ok",
                     "value": ITEMS.index(item)}
                    for item in sh.shard_items(ITEMS, shard, shards)]  # fmt: skip
            return pd.DataFrame(rows, columns=SCHEMA.names)

        return fill

    return make


def _write(out, shards, plan, make):
    return [sh.write_shard(out, i, shards, plan, SCHEMA, make(i, shards), "test")
            for i in range(shards)]  # fmt: skip


def test_sharded_merge_follows_the_plan_order_and_equals_one_shard(tmp_path):
    make = _filler([])
    _write(tmp_path / "one", 1, "p1", make)
    one = sh.merge_shards(tmp_path / "one", 1, "p1", SCHEMA, "item", ITEMS, "test")
    _write(tmp_path / "three", 3, "p1", make)
    three = sh.merge_shards(tmp_path / "three", 3, "p1", SCHEMA, "item", ITEMS, "test")
    assert list(one["item"]) == ITEMS
    pd.testing.assert_frame_equal(one, three)
    plan = json.loads((sh.shard_dir(tmp_path / "three", 1, 3) / sh.PLAN_FILE).read_text())
    assert plan == {"fingerprint": "p1", "shard": 1, "shards": 3, "rows": 2, "failed": 0}


def test_a_complete_shard_is_kept_and_an_interrupted_one_leaves_nothing(tmp_path):
    calls = []
    make = _filler(calls)

    def interrupted(tmp, folder):
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt  # a worker killed half-way

    with pytest.raises(KeyboardInterrupt):
        sh.write_shard(tmp_path, 0, 2, "p1", SCHEMA, interrupted, "test")
    assert sh.shard_state(sh.shard_dir(tmp_path, 0, 2), "p1") == "missing"
    assert not any(p.name.startswith(".") for p in (tmp_path / "shards").iterdir())
    _write(tmp_path, 2, "p1", make)
    assert calls == [(0, 2), (1, 2)]
    _write(tmp_path, 2, "p1", make)  # both complete for this plan: kept
    assert calls == [(0, 2), (1, 2)]
    _write(tmp_path, 2, "p2", make)  # another plan: redone
    assert calls == [(0, 2), (1, 2), (0, 2), (1, 2)]


def test_a_shard_with_failed_rows_is_merged_but_redone(tmp_path):
    calls = []
    _write(tmp_path, 2, "p1", _filler(calls, fail={"a"}))
    assert sh.shard_state(sh.shard_dir(tmp_path, 1, 2), "p1") == "failed rows"
    merged = sh.merge_shards(tmp_path, 2, "p1", SCHEMA, "item", ITEMS, "test")
    assert merged.set_index("item").loc["a", "status"] == "failed"
    _write(tmp_path, 2, "p1", _filler(calls))
    assert calls[2:] == [(1, 2)]  # only the shard holding the failure is retried


def test_merge_refuses_missing_shards_and_shards_of_another_plan_by_name(tmp_path):
    make = _filler([])
    sh.write_shard(tmp_path, 0, 3, "p1", SCHEMA, make(0, 3), "test")
    sh.write_shard(tmp_path, 1, 3, "old", SCHEMA, make(1, 3), "test")
    with pytest.raises(sh.ShardError) as caught:
        sh.merge_shards(tmp_path, 3, "p1", SCHEMA, "item", ITEMS, "test")
    message = str(caught.value)
    assert isinstance(caught.value, InputError) and "2 of 3 shards not complete" in message
    assert f"{sh.shard_dir(tmp_path, 1, 3)} (other plan)" in message
    assert f"{sh.shard_dir(tmp_path, 2, 3)} (missing)" in message
    assert str(sh.shard_dir(tmp_path, 0, 3)) not in message
    assert not (tmp_path / sh.INDEX_FILE).exists()


def test_merge_refuses_shards_that_do_not_hold_the_plan(tmp_path):
    _write(tmp_path, 2, "p1", _filler([]))
    with pytest.raises(sh.ShardError, match="missing: f; not in the plan: e"):
        sh.merge_shards(tmp_path, 2, "p1", SCHEMA, "item", ["c", "a", "d", "b", "f"], "test")


def test_merge_removes_the_shards_of_other_counts(tmp_path):
    make = _filler([])
    _write(tmp_path, 3, "p1", make)
    _write(tmp_path, 2, "p1", make)
    sh.merge_shards(tmp_path, 2, "p1", SCHEMA, "item", ITEMS, "test")
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "shard-000-of-002", "shard-001-of-002"]  # fmt: skip


def test_fingerprints_and_file_digests(tmp_path):
    assert sh.fingerprint({"a": 1, "b": 2}) == sh.fingerprint({"b": 2, "a": 1})
    assert sh.fingerprint("x", {"a": 1}) != sh.fingerprint("x", {"a": 2})
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00\x01")
    (model / ".weights.tmp-1").write_bytes(b"half")  # a temporary: not part of the model
    digest = sh.files_digest(model)
    (model / ".weights.tmp-1").write_bytes(b"other")
    assert sh.files_digest(model) == digest
    (model / "weights.bin").write_bytes(b"\x00\x02")
    assert sh.files_digest(model) != digest
    with pytest.raises(MissingInputError, match="gone: model folder not found"):
        sh.files_digest(tmp_path / "gone")


def test_side_tables_merge_in_plan_order_and_the_index_takes_its_stage_name(tmp_path):
    frames = pa.schema([("item", pa.string()), ("frame", pa.int64())])

    def make(shard: int, shards: int):
        def fill(tmp, folder):
            mine = sh.shard_items(ITEMS, shard, shards)
            rows = [{"item": item, "frame": f} for item in mine for f in range(2)]
            tables.write_table(pd.DataFrame(rows), tmp / "frames.parquet", frames)
            return pd.DataFrame([{"item": i, "status": "ok", "value": 0} for i in mine])

        return fill

    _write(tmp_path, 2, "p", make)
    sh.merge_shards(tmp_path, 2, "p", SCHEMA, "item", ITEMS, "test", index_file="clips.parquet")
    assert list(pd.read_parquet(tmp_path / "clips.parquet")["item"]) == ITEMS
    assert not (tmp_path / sh.INDEX_FILE).exists()
    merged = sh.merge_shard_tables(tmp_path, 2, "frames.parquet", frames, "item", ITEMS)
    assert list(zip(merged["item"], merged["frame"], strict=True)) == [
        (item, f) for item in ITEMS for f in range(2)
    ]
    with pytest.raises(sh.ShardError, match="not in the plan: c"):
        sh.merge_shard_tables(tmp_path, 2, "frames.parquet", frames, "item", ["a", "b", "d", "e"])


def test_file_tokens_follow_content_and_size_and_name_a_missing_file(tmp_path):
    small, big = tmp_path / "small.mp4", tmp_path / "big.mp4"
    small.write_bytes(b"x" * 100)
    token = sh.file_token(small)
    assert token[:2] == [str(small), 100]
    small.write_bytes(b"y" * 100)
    assert sh.file_token(small) != token
    # A large file: its first and last MiB decide (the middle is not read).
    data = bytearray(b"a" * (5 << 20))
    big.write_bytes(bytes(data))
    first = sh.file_token(big)
    data[-1] = ord("b")
    big.write_bytes(bytes(data))
    assert sh.file_token(big) != first
    assert sh.file_token(tmp_path / "gone.mp4") == [str(tmp_path / "gone.mp4"), "missing"]


def test_code_digests_follow_each_stage_s_own_code():
    from stages.common import code_digest

    assert len(code_digest("stages.cut")) == 16
    assert code_digest("stages.cut") == code_digest("stages.cut")
    assert code_digest("stages.cut") != code_digest("stages.extract")

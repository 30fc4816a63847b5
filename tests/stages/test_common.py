"""The stage entry points' shared argument handling: ``--shard i/n`` and ``--merge n``."""

from __future__ import annotations

import argparse

import pytest

from stages.common import add_shard_arguments, shards_to_merge, stage_parser


def _parse(*argv: str) -> argparse.Namespace:
    parser = stage_parser("test")
    add_shard_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "written", "merged"), [
    ((), [(0, 1)], 1),                     # one process: shard 0/1, then the merge of 1
    (("--shard", "2/3"), [(2, 3)], None),  # one worker's part: nothing to merge here
    (("--merge", "3"), [], 3),             # the merge of 3 shards: nothing written
])  # fmt: skip
def test_each_process_writes_its_shard_and_says_what_to_merge(argv, written, merged):
    calls = []
    assert shards_to_merge(_parse(*argv), lambda shard, count: calls.append((shard, count))) \
        == merged  # fmt: skip
    assert calls == written


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1-2", "a/b"])
def test_a_bad_shard_is_refused(text, capsys):
    with pytest.raises(SystemExit):
        _parse("--shard", text)
    assert "--shard" in capsys.readouterr().err


def test_shard_and_merge_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        _parse("--shard", "0/2", "--merge", "2")
    assert "not allowed with" in capsys.readouterr().err

"""Argument parsing and error reporting shared by the stage entry points."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.errors import InputError

log = logging.getLogger("paha")


def quiet_native_logs() -> None:
    """MediaPipe/TFLite print per-graph info lines to stderr: keep warnings and errors only.

    Called by :func:`run_stage` before any worker process starts, so workers inherit it; nothing
    changes the environment at import time.
    """
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects i/n, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return index, count


def code_digest(entry: str) -> str:
    """16 hex digits of SHA-256 over the code the stage module ``entry`` (``"stages.curate"``)
    runs: its import closure within the project, the files its ``dvc.yaml`` deps list
    (:func:`pipeline.orchestration.code_deps.import_closure`). A shard plan records it, so that
    a shard written by other code is redone rather than kept when the flow reruns the stage."""
    from pipeline.orchestration.code_deps import import_closure

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in import_closure(root, entry):
        digest.update(f"{name}\0".encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard i/n`` (write only shard ``i`` of ``n``; kept when already complete for the same
    plan) or ``--merge n`` (assemble the stage's outputs from ``n`` complete shards); neither:
    one process writes shard 0/1 and merges it (:mod:`pipeline.io.shards`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard", type=parse_shard, help="write only shard i of n (i/n)")
    group.add_argument("--merge", type=int, help="assemble the outputs from n complete shards")


def shards_to_merge(args: argparse.Namespace,
                    write_shard: Callable[[int, int], object]) -> int | None:  # fmt: skip
    """This process's part of a sharded stage (:func:`add_shard_arguments`): ``--shard i/n``
    writes shard ``i`` of ``n`` and returns None (another call merges); ``--merge n`` writes
    nothing and returns ``n``; neither writes shard 0/1 and returns 1.

    ``write_shard(shard, shards)`` writes one shard (kept when already complete for its plan).
    """
    if args.merge is not None:
        return args.merge
    shard, shards = args.shard or (0, 1)
    write_shard(shard, shards)
    return None if args.shard is not None else 1


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (%(default)s)")
    return parser


def add_timings_argument(parser: argparse.ArgumentParser) -> None:
    """``--timings PATH``: where the run's wall-clock figures go, apart from the metrics file
    (which stays reproducible); see :func:`timings_path` for its default."""
    parser.add_argument("--timings", help="JSON file for this run's seconds "
                        "(default: timings/NAME beside --metrics NAME)")  # fmt: skip


def timings_path(args: argparse.Namespace) -> Path:
    """``--timings``, or ``timings/<name>`` beside ``--metrics <name>`` (``data/metrics/x.json``
    -> ``data/metrics/timings/x.json``, what ``dvc.yaml`` declares), so that a stage run by hand
    (``--merge n`` after its shards) still writes every output its stage declares."""
    if args.timings:
        return Path(args.timings)
    metrics = Path(args.metrics)
    return metrics.parent / "timings" / metrics.name


def run_stage(main: Callable[[argparse.Namespace, Params], None], parser: argparse.ArgumentParser,
              argv: list[str] | None = None) -> int:  # fmt: skip
    """Parse arguments, load params, run ``main``.

    The project's input errors (:class:`~pipeline.errors.InputError`: params, tables, media,
    overrides, models) exit 2 with one line; anything else is a bug and propagates with its
    traceback (exit 1).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_native_logs()
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        main(args, params)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

"""How a stage's work is split into shards that separate workers write, and merged back.

One implementation for every sharded stage: the data half (``cut``, ``curate``'s measuring,
``extract``) and the sampling stages (``negatives``, ``infer``). Each stage plans its ordered
items, fingerprints the plan (:func:`fingerprint` of its code, ``stages.common.code_digest``,
its settings and its inputs, e.g. :func:`file_token` of each source video), writes its shard
with :func:`write_shard` and merges with :func:`merge_shards` (plus :func:`merge_shard_tables`
for per-frame tables).

Shard ``i`` of ``n`` is the folder ``<out>/shards/shard-iii-of-nnn``. :func:`write_shard` builds
it in a temporary sibling and renames it when complete (:func:`~pipeline.io.outputs.
atomic_directory`), with the shard's index (``index.parquet``) and, written last, ``plan.json``:
the **plan fingerprint** (a hash of everything that decides the shard's content: settings,
items, model digests), ``shard``, ``shards``, ``rows`` and ``failed``. So a worker killed half-way
leaves no shard, and a shard already complete for the same plan is kept when its worker runs
again (a restarted flow redoes only what is missing). A shard whose index has rows with a
``status`` other than ``ok`` is written, so the merge can report them, but is not kept: the next
run of that shard retries it.

:func:`merge_shards` assembles ``<out>/index.parquet`` from all ``n``: it refuses shards that
are missing or were written for another plan (naming them), concatenates the shard indexes in
plan order, checks that they hold exactly the planned items and removes the shard folders of
other shard counts. The split depends only on the ordered items and ``n``, so any worker may
run any shard and the merged result equals one process's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import pyarrow as pa

from pipeline.errors import InputError, MissingInputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json

T = TypeVar("T")
log = logging.getLogger("paha.shards")

PLAN_FILE = "plan.json"  # written last: a shard folder without it is not complete
INDEX_FILE = "index.parquet"
ShardState = Literal["missing", "other plan", "failed rows", "complete"]


class ShardError(InputError):
    """The shards to merge are missing, of another plan, or do not hold the planned items."""


def shard_dir(out: str | Path, shard: int, shards: int) -> Path:
    """``<out>/shards/shard-iii-of-nnn``."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard}/{shards}: need 0 <= shard < shards")
    return Path(out) / "shards" / f"shard-{shard:03d}-of-{shards:03d}"


def shard_items(items: Sequence[T], shard: int, shards: int) -> list[T]:
    """Items ``shard, shard + shards, ...`` of ``items`` (round robin)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard}/{shards}: need 0 <= shard < shards")
    return list(items[shard::shards])


def remove_other_shards(out: str | Path, shards: int) -> None:
    """Delete everything under ``<out>/shards`` but the folders of shards ``0..shards-1`` of
    ``shards`` (left by an earlier split into another number of shards)."""
    keep = {shard_dir(out, i, shards) for i in range(shards)}
    root = Path(out) / "shards"
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir() and folder not in keep:
            shutil.rmtree(folder)


# ---------------------------------------------------------------------------------- plans
def fingerprint(*parts: Any) -> str:
    """16 hex digits of SHA-256 over ``parts``: a string as it is, anything else as JSON with
    sorted keys (so a dict's order does not matter)."""
    blob = "".join(p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def files_digest(*paths: str | os.PathLike) -> str:
    """16 hex digits of SHA-256 over the files under ``paths`` (relative names and bytes, sorted;
    hidden files such as temporaries are left out): what a plan records of model folders.

    Raises MissingInputError naming a path that does not exist or holds no file.
    """
    digest = hashlib.sha256()
    for root in map(Path, paths):
        if root.is_file():
            files = {root.name: root}
        else:
            files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
            files = {name: p for name, p in files.items()
                     if not any(part.startswith(".") for part in name.split("/"))}  # fmt: skip
        if not files:
            raise MissingInputError(f"{root}: model folder not found or empty")
        for name, file in sorted(files.items()):
            digest.update(f"{name}\0".encode())
            with open(file, "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def read_shard_plan(folder: str | Path) -> dict | None:
    """The ``plan.json`` of a written shard folder, or None when the shard is not written."""
    folder = Path(folder)
    plan_file = folder / PLAN_FILE
    if not (plan_file.is_file() and (folder / INDEX_FILE).is_file()):
        return None
    return json.loads(plan_file.read_text())


def shard_state(folder: str | Path, plan: str) -> ShardState:
    """Where a shard folder stands for the plan fingerprint ``plan``: ``missing`` (not written,
    or interrupted), ``other plan``, ``failed rows`` (written, some rows failed) or ``complete``."""
    written = read_shard_plan(folder)
    if written is None:
        return "missing"
    if written.get("fingerprint") != plan:
        return "other plan"
    return "failed rows" if written.get("failed", 0) else "complete"


def shard_is_complete(folder: str | Path, plan: str) -> bool:
    """True when ``folder`` holds a finished shard of the plan ``plan`` without failed rows."""
    return shard_state(folder, plan) == "complete"


# ---------------------------------------------------------------------------------- writing
def write_shard(out: str | Path, shard: int, shards: int, plan: str, schema: pa.Schema,
                fill: Callable[[Path, Path], pd.DataFrame], label: str) -> Path:  # fmt: skip
    """Write shard ``shard`` of ``shards`` of plan ``plan``; keep it when already complete.

    Args:
        out: the stage's output folder (the shard goes to :func:`shard_dir`).
        plan: the plan fingerprint (:func:`fingerprint` of everything deciding the content).
        schema: the shard index's table schema (:mod:`pipeline.io.tables`).
        fill: ``fill(tmp, folder)`` writes the shard's files under ``tmp`` (naming them by their
            final paths under ``folder``, :func:`~pipeline.io.outputs.final_path`) and returns
            the shard's index rows. An exception leaves no shard.
        label: the stage, for messages (``"negatives"``, ``"infer sg"``).

    Returns the shard's folder.
    """
    folder = shard_dir(out, shard, shards)
    if shard_is_complete(folder, plan):
        log.info("%s: %s is complete for plan %s, kept", label, folder, plan)
        return folder
    with atomic_directory(folder) as tmp:
        index = fill(tmp, folder)
        tables.write_table(index, tmp / INDEX_FILE, schema)
        failed = int((index["status"] != "ok").sum()) if "status" in index.columns else 0
        write_json({"fingerprint": plan, "shard": shard, "shards": shards, "rows": len(index),
                    "failed": failed}, tmp / PLAN_FILE)  # fmt: skip
    return folder


# ---------------------------------------------------------------------------------- merging
def _listed(values: Sequence, limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def merge_shards(out: str | Path, shards: int, plan: str, schema: pa.Schema, key: str,
                 order: Sequence, label: str,
                 index_file: str = INDEX_FILE) -> pd.DataFrame:  # fmt: skip
    """Assemble ``<out>/<index_file>`` from the ``shards`` written shards of plan ``plan``.

    Args:
        key: the index column naming each planned item (``window_id``, ``clip_id``).
        order: the planned items in plan order: the merged rows follow it.
        label: the stage, for messages.
        index_file: the merged index's name under ``out`` (the data stages keep the names their
            consumers read: ``clips.parquet``, ``extract.parquet``).

    Raises :class:`ShardError` naming the shards that are missing (never written, or
    interrupted) or written for another plan, or when the shards do not hold each planned item
    exactly once. Shard folders of other shard counts are removed once the merge is sure.
    """
    out = Path(out)
    folders = [shard_dir(out, i, shards) for i in range(shards)]
    states = {folder: shard_state(folder, plan) for folder in folders}
    bad = [f"{folder} ({state})" for folder, state in states.items()
           if state in ("missing", "other plan")]  # fmt: skip
    if bad:
        raise ShardError(f"{label}: {len(bad)} of {shards} shards not complete for plan {plan}: "
                         f"{', '.join(bad)}")  # fmt: skip
    frame = pd.concat([tables.read_table(f / INDEX_FILE, schema) for f in folders],
                      ignore_index=True)  # fmt: skip
    position = {item: i for i, item in enumerate(order)}
    held = set(frame[key])
    missing = [item for item in order if item not in held]
    unplanned = sorted((item for item in held if item not in position), key=str)
    repeated = sorted(set(frame.loc[frame[key].duplicated(), key]), key=str)
    if missing or unplanned or repeated:
        problems = [f"{what}: {_listed(items)}" for what, items in
                    (("missing", missing), ("not in the plan", unplanned),
                     ("more than once", repeated)) if items]  # fmt: skip
        raise ShardError(f"{label}: the shards hold {len(frame)} rows for {len(position)} planned "
                         f"{key}s; " + "; ".join(problems))  # fmt: skip
    frame = frame.sort_values(key, key=lambda column: column.map(position)).reset_index(drop=True)
    remove_other_shards(out, shards)
    tables.write_table(frame, out / index_file, schema)
    return frame


def merge_shard_tables(out: str | Path, shards: int, name: str, schema: pa.Schema, key: str,
                       order: Sequence) -> pd.DataFrame:  # fmt: skip
    """Concatenate the table ``name`` that each of the ``shards`` shard folders holds beside its
    index (e.g. ``pose.parquet``: many rows per item), items in plan ``order`` and each item's
    rows in their shard's order. Call after :func:`merge_shards` has checked the shards."""
    out = Path(out)
    frame = pd.concat([tables.read_table(shard_dir(out, i, shards) / name, schema)
                       for i in range(shards)], ignore_index=True)  # fmt: skip
    position = {item: i for i, item in enumerate(order)}
    ranks = frame[key].map(position)
    if ranks.isna().any():
        strays = sorted(set(frame.loc[ranks.isna(), key]), key=str)
        raise ShardError(f"{out}: {name} of the shards holds items not in the plan: "
                         f"{_listed(strays)}")  # fmt: skip
    return frame.iloc[ranks.argsort(kind="stable")].reset_index(drop=True)


def file_token(path: str | os.PathLike) -> list:
    """What a plan records of an input media file without reading all of it: its path, size
    and the SHA-256 (16 hex digits) of its first and last MiB, or ``missing``. A re-rendered or
    re-downloaded source changes it; reading thousands of hours of video to plan would not pay."""
    path = Path(path)
    if not path.is_file():
        return [str(path), "missing"]
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read())
    return [str(path), size, digest.hexdigest()[:16]]


__all__ = [
    "INDEX_FILE", "PLAN_FILE", "ShardError", "file_token", "files_digest",
    "fingerprint", "merge_shard_tables", "merge_shards", "read_shard_plan", "remove_other_shards",
    "shard_dir", "shard_is_complete", "shard_items", "shard_state", "write_shard",
]  # fmt: skip

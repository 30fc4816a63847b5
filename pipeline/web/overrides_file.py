"""Writing the reviewer's overrides CSV (``data/overrides.csv``) safely from a web page.

The format is :mod:`pipeline.curation.overrides`' (columns ``clip_id, decision, note``, one line
per clip), which ``curate`` reads. :func:`record_decision` changes one clip's line under an
exclusive lock and replaces the whole file by rename, so two reviewers deciding at once both
land (each rewrite starts from the other's result) and a reader (``curate``, the page) sees the
old file or the new one, never half of one.

The writer lives here rather than in :mod:`pipeline.curation.overrides` because that module is a
dependency of the ``curate`` stage: a change to it would make ``dvc repro`` rerun curate and all
that follows.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.curation.overrides import (
    OVERRIDE_COLUMNS,
    OVERRIDE_DECISIONS,
    Override,
    OverridesError,
    read_overrides,
)
from pipeline.io.outputs import atomic_file


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file beside ``path``: ``.NAME.tmp-lock``, so the repository's ignore pattern
    for temporaries (``data/.*.tmp-*``) keeps it out of git."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-lock")


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on :func:`lock_path` of ``path`` (blocks until free).

    A lock file, not the CSV itself: the CSV is replaced by rename, and a lock on a replaced
    file's old inode would not exclude the next writer. ``flock`` is released by the kernel when
    the process dies, so a killed reviewer never leaves the file locked.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_overrides(path: str | os.PathLike, overrides: list[Override]) -> Path:
    """Write ``overrides`` in order as the CSV ``path`` (temp file + fsync + rename).

    The caller holds :func:`locked`; use :func:`record_decision` to change one clip.
    """
    path = Path(path)
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(OVERRIDE_COLUMNS)
        for item in overrides:
            writer.writerow([item.clip_id, item.decision, item.note])
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename makes it the file
    return path


def record_decision(path: str | os.PathLike, clip_id: str, decision: str | None,
                    note: str = "") -> dict[str, Override]:  # fmt: skip
    """Set (or with ``decision=None`` remove) ``clip_id``'s line of the overrides CSV ``path``.

    Args:
        path: the overrides CSV (``curate.overrides``); created with its header when missing.
        clip_id: the clip (a row of ``data/curated/clips.parquet``).
        decision: ``"keep"``, ``"reject"`` or None (forget the reviewer's decision).
        note: why (one line; line breaks become spaces, surrounding spaces go).

    Returns:
        The overrides now in the file (``read_overrides`` of the new file).

    A clip already in the file keeps its line position; a new one is appended. Raises
    :class:`OverridesError` for a bad decision or clip id, or when the existing file is
    malformed (it is then left as it is, for a person to fix).
    """
    clip_id = clip_id.strip()
    if not clip_id:
        raise OverridesError(f"{path}: empty clip_id")
    if decision is not None:
        decision = decision.strip().lower()
        if decision not in OVERRIDE_DECISIONS:
            raise OverridesError(f"{path}: decision {decision!r} for {clip_id!r} is not one of "
                                 f"{list(OVERRIDE_DECISIONS)}")  # fmt: skip
    note = " ".join(note.split())
    with locked(path):
        current = read_overrides(path)  # under the lock: the other reviewers' latest lines
        items = sorted(current.values(), key=lambda item: item.line)
        if decision is None:
            items = [item for item in items if item.clip_id != clip_id]
        elif clip_id in current:
            items = [Override(clip_id, decision, note, item.line) if item.clip_id == clip_id
                     else item for item in items]  # fmt: skip
        else:
            items.append(Override(clip_id, decision, note, 0))
        write_overrides(path, items)
        return read_overrides(path)

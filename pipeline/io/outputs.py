"""Writing stage outputs so that an interrupted stage never leaves a half-written artifact.

A directory output is built under a temporary sibling and swapped in by rename at the end; a file
is written to a temporary sibling and renamed. The previous artifact stays intact until the new
one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_pid_suffix(path: Path) -> bool:
    pid = path.name.rsplit("-", 1)[-1]
    return pid.isdigit() and not _alive(int(pid))


def remove_stale_temporaries(final: Path) -> None:
    """Clean up after processes killed while writing ``final`` (their PID is not alive).

    ``.NAME.tmp-PID`` (a half-built replacement) is removed. ``.NAME.old-PID`` (the previous
    artifact, moved aside by :func:`replace_directory`) is put back when the writer died between
    its two renames and ``final`` is missing; otherwise it is removed.
    """
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        if _dead_pid_suffix(stale):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    for old in final.parent.glob(f".{final.name}.old-*"):
        if _dead_pid_suffix(old):
            if old.is_dir() and not final.exists():
                os.replace(old, final)
            else:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def replace_directory(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Swap the complete directory ``tmp`` in as ``final``, by rename (same file system).

    An existing ``final`` is first renamed to ``.NAME.old-PID`` beside it and removed once the
    new one is in place, so a reader sees the old or the new folder, never a mix; if the second
    rename fails, the old folder is put back. A writer killed between the two renames leaves the
    old folder under that name; :func:`remove_stale_temporaries` (run by the next
    :func:`atomic_directory` on ``final``) restores it. Returns ``final``.
    """
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    moved_aside = final.exists()
    if moved_aside:
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if moved_aside:
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` when the block succeeds.

    Files inside should be referred to by their final paths (see :func:`final_path`).
    On an exception the temporary directory is removed and ``final`` is left as it was; on
    success :func:`replace_directory` swaps it in.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        replace_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def final_path(path: str | os.PathLike, tmp: Path, final: str | os.PathLike) -> str:
    """Map a path under the temporary directory ``tmp`` to where it will be under ``final``."""
    return str(Path(final) / Path(path).relative_to(tmp))


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix) that is renamed to ``path`` when the
    block succeeds and removed when it fails; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (temp file, then rename), keys sorted, 2-space indented."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_png(image_rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG, atomically."""
    with atomic_file(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return Path(path)

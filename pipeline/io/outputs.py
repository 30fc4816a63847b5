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


def remove_stale_temporaries(final: Path) -> None:
    """Remove ``.NAME.tmp-PID`` siblings of ``final`` left by killed processes (PID not alive)."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()


@contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` when the block succeeds.

    Files inside should be referred to by their final paths (see :func:`final_path`).
    On an exception the temporary directory is removed and ``final`` is left as it was.
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
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


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

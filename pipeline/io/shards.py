"""How a stage's work is split into shards that separate workers write.

Shard ``i`` of ``n`` is written to ``<out>/shards/shard-iii-of-nnn`` (atomically, by the stage) and
a merge step assembles the stage's index from all ``n``. The split depends only on the ordered
items and ``n``, so any worker may run any shard and the merged result equals one process's.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


__all__ = ["remove_other_shards", "shard_dir", "shard_items"]

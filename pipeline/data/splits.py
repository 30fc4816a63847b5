"""The one held-out split rule: the curated train/test split and every stage's held-out clips.

A clip's rank is ``sha256(seed, group, clip_id)``; the first :func:`n_held_out` ranked clips are
held out. The result depends only on the clip ids of the group and the seed: not on row order, on
other groups (speakers) or on how many clips other stages see. ``curate`` splits 90/10 per
speaker (``group`` = speaker); the PCE classifiers, the gesture autoencoder and the corpus SyncNet
hold out a fraction of the training clips for their own evaluation (one group).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import pandas as pd

from pipeline.errors import InputError


def rank_key(seed: int, group: str, clip_id: str) -> str:
    """The sort key of ``clip_id`` within ``group``."""
    return hashlib.sha256(f"{seed}\x00{group}\x00{clip_id}".encode()).hexdigest()


def n_held_out(n: int, fraction: float) -> int:
    """Clips held out of ``n``: ``round(n * fraction)`` (halves up), at least 1 when ``n >= 2``
    (every group is evaluated) and at most ``n - 1`` (every group is trained on); 0 when the
    fraction is 0 or there is a single clip."""
    if n < 2 or fraction <= 0:
        return 0
    return min(n - 1, max(1, math.floor(n * fraction + 0.5)))


def held_out(clip_ids: Iterable[str], fraction: float, seed: int, group: str = "") -> set[str]:
    """The held-out subset of ``clip_ids`` (duplicates count once)."""
    ranked = sorted(set(clip_ids), key=lambda clip_id: rank_key(seed, group, clip_id))
    return set(ranked[: n_held_out(len(ranked), fraction)])


def train_and_held_out(
    clip_ids: Iterable[str], fraction: float, seed: int, group: str = ""
) -> tuple[list[str], list[str]]:
    """``(train, held_out)``, each sorted by clip id."""
    ids = sorted(set(clip_ids))
    out = held_out(ids, fraction, seed, group)
    return [c for c in ids if c not in out], [c for c in ids if c in out]


def split_by_speaker(table: pd.DataFrame, test_fraction: float, seed: int) -> pd.Series:
    """The curated train/test split: per speaker, :func:`held_out` of its kept clips is
    ``"test"``, the rest ``"train"``; clips that are not kept get ``""``.

    Args:
        table: rows with ``clip_id``, ``speaker`` and ``kept``.

    Returns:
        A string Series aligned with ``table``'s index.
    """
    split = pd.Series("", index=table.index, dtype=object)
    kept = table[table["kept"].astype(bool)]
    unnamed = kept["clip_id"][kept["speaker"].isna() | (kept["speaker"] == "")].tolist()
    if unnamed:  # groupby would silently leave them out of both splits
        raise InputError(f"kept clips without a speaker: {unnamed[:5]}")
    for speaker, group in kept.groupby("speaker", sort=True):
        test = held_out(group["clip_id"], test_fraction, seed, str(speaker))
        split.loc[group.index] = ["test" if c in test else "train" for c in group["clip_id"]]
    return split

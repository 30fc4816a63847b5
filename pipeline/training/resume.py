"""Which checkpoint a training run resumes from: the run fingerprint and the choice.

A run's *fingerprint* hashes what it trains on: its params section (less the settings that may
change mid-run, :data:`RESUMABLE_CHANGES`), its data ids and extras such as the digest of a
frozen model's weights. Every checkpoint records the fingerprint of the run that wrote it.

:func:`checkpoint_to_resume` picks the latest checkpoint of the *same* fingerprint. A checkpoint
of other settings is never resumed and never deleted: it is moved, with the other checkpoints
of its run, into ``<root>/previous-<its fingerprint>/``. When the settings change back, that
folder's checkpoints move back into ``<root>`` and the old run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from pydantic import BaseModel

from pipeline.io.outputs import replace_directory
from pipeline.training.checkpoint_store import FORMAT_VERSION, list_checkpoints, read_state

log = logging.getLogger(__name__)

# Settings that may change without invalidating a run's checkpoints: extending a run, saving,
# logging or evaluating more often must still resume it.
RESUMABLE_CHANGES = frozenset({
    "steps", "save_every", "keep_checkpoints", "log_every", "eval_every", "eval_frames",
    "preview_steps", "workers",
})  # fmt: skip
PREVIOUS_PREFIX = "previous-"


def fingerprint(params: BaseModel, data_ids: Iterable[str], extra: Mapping | None = None) -> str:
    """16 hex digits hashing ``params`` (less :data:`RESUMABLE_CHANGES`), the sorted
    ``data_ids`` and ``extra`` (JSON-able: weights digests, model configs)."""
    settings = params.model_dump(exclude=set(RESUMABLE_CHANGES))
    blob = json.dumps({"params": settings, "data": sorted(data_ids), "extra": dict(extra or {})},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def weights_digest(module: torch.nn.Module) -> str:
    """16 hex digits hashing a module's state dict (tells whether two runs used one model).

    Scalars (0-dim tensors, e.g. a gate started from a pretrained model) hash as one element.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """The fingerprint a checkpoint was saved with; ``format<N>-...`` for another format."""
    state = read_state(path)
    version = state.get("format_version")
    if version == FORMAT_VERSION:
        return str(state["fingerprint"])
    old = state.get("fingerprint") or state.get("extra", {}).get("fingerprint") or "unknown"
    return f"format{version}-{old}"


def previous_folder(root: str | os.PathLike, run_fingerprint: str) -> Path:
    """Where the checkpoints of the run ``run_fingerprint`` wait while other settings train."""
    return Path(root) / f"{PREVIOUS_PREFIX}{run_fingerprint}"


def resumable_checkpoint(root: str | os.PathLike, run_fingerprint: str) -> Path | None:
    """The checkpoint :func:`checkpoint_to_resume` would resume from, without moving anything
    (its path may then be under ``previous-<run_fingerprint>/``); None for a fresh start."""
    found = [(step, path) for step, path in list_checkpoints(root)
             if checkpoint_fingerprint(path) == run_fingerprint]  # fmt: skip
    found += list_checkpoints(previous_folder(root, run_fingerprint))
    return max(found)[1] if found else None


def checkpoint_to_resume(root: str | os.PathLike, run_fingerprint: str) -> Path | None:
    """The latest checkpoint of the run ``run_fingerprint`` under ``root``, or None.

    Steps:

    1. every checkpoint in ``root`` of another fingerprint moves to
       ``root/previous-<that fingerprint>/`` (a checkpoint of the same step already waiting
       there is replaced: same settings, same step, same weights);
    2. the checkpoints waiting in ``root/previous-<run_fingerprint>/`` move back into ``root``;
    3. the latest checkpoint in ``root`` (all of this run now) is returned.
    """
    root = Path(root)
    for _, path in list_checkpoints(root):
        other = checkpoint_fingerprint(path)
        if other != run_fingerprint:
            aside = previous_folder(root, other)
            aside.mkdir(exist_ok=True)
            log.warning("%s was trained with other settings: moved to %s", path, aside)
            _move(path, aside / path.name)
    waiting = previous_folder(root, run_fingerprint)
    if waiting.is_dir():
        for _, path in list_checkpoints(waiting):
            log.info("%s: this run's checkpoint moves back to %s", path, root)
            _move(path, root / path.name)
        if not any(waiting.iterdir()):
            waiting.rmdir()
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def _move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing a checkpoint folder already there."""
    replace_directory(source, target)

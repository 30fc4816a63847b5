"""Training checkpoints on disk: one folder per step, written atomically, nothing unpickled.

Layout under a checkpoint root (e.g. ``data/models/univdm/checkpoints``)::

    <root>/step-000000100/
        model.safetensors      the model's state dict (tied weights stored once)
        ema.safetensors        optional: the EMA copy of the model (an ``AveragedModel``'s
                               ``.module``), same keys as model.safetensors
        optimizer.pt           ``optimizer.state_dict()`` (tensors, numbers, tuples)
        lr_schedule.pt         optional: ``lr_schedule.state_dict()``
        rng.pt                 torch CPU / CUDA, python and numpy RNG states
        state.json             {"format_version", "step", "fingerprint", "ema_updates"}
    <root>/previous-<fingerprint>/step-...   checkpoints of other settings (see resume.py)

Writing: everything goes into ``<root>/.step-000000100.tmp``, each file synced, ``state.json``
last; the folder is then renamed into place, so a folder named ``step-*`` is always complete.
Temporary folders left by a killed run are never listed and are removed by the next save.

Reading: tensors come from safetensors; the ``.pt`` files are read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pipeline.errors import InputError, MissingInputError
from pipeline.io.outputs import replace_directory

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 1: the JSON-encoded optimizer of the former checkpoints.py
STEP_DIGITS = 9
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
LR_SCHEDULE_FILE = "lr_schedule.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "state.json"

_STEP_DIR = re.compile(r"^step-(\d+)$")
_TEMP_DIR = re.compile(r"^\.step-\d+\.(tmp|old|del)$")


class CheckpointError(InputError, RuntimeError):
    """A checkpoint is missing a file, is unreadable, or does not match what it is loaded into."""


@dataclass
class TrainingState:
    """What a checkpoint holds: the objects a training loop updates.

    ``model`` is the bare module (unwrap DDP before saving); ``ema`` an
    ``torch.optim.swa_utils.AveragedModel`` of it or None; ``lr_schedule`` a
    ``torch.optim.lr_scheduler`` object (diffusers' ``get_scheduler``) or None.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_schedule: Any = None
    ema: AveragedModel | None = None


# ---------------------------------------------------------------- listing
def step_dir_name(step: int) -> str:
    """Folder name of the checkpoint for ``step``: ``step-000000100``."""
    return f"step-{step:0{STEP_DIGITS}d}"


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints directly under ``root`` as ``(step, path)``, oldest first.

    Only folders named ``step-<digits>`` holding ``state.json`` count; temporary folders of an
    interrupted save and ``previous-*`` folders are not listed. A missing root is empty.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir() and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def checkpoint_for_step(root: str | os.PathLike, step: int) -> Path:
    """The checkpoint for exactly ``step``; MissingInputError naming the steps available."""
    found = list_checkpoints(root)
    for found_step, path in found:
        if found_step == step:
            return path
    available = ", ".join(str(s) for s, _ in found) or "none"
    raise MissingInputError(f"{root}: no checkpoint for step {step} (steps available: {available})")


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """``state.json`` of a checkpoint folder (``step``, ``fingerprint``, ``format_version``)."""
    file = Path(path) / STATE_FILE
    try:
        state = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file}: unreadable ({error})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{file}: no integer 'step'")
    return state


def prune_checkpoints(
    root: str | os.PathLike, keep_last: int, protect_steps: Iterable[int] = ()
) -> list[Path]:
    """Delete the checkpoints older than the last ``keep_last``, except ``protect_steps``.

    Each is renamed to a hidden name before it is removed, so an interrupted prune never leaves
    a partial ``step-*`` folder. Returns the paths removed.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    protect = set(protect_steps)
    found = list_checkpoints(root)
    removed = []
    for step, path in found[: max(0, len(found) - keep_last)]:
        if step in protect:
            continue
        doomed = path.with_name(f".{path.name}.del")
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        shutil.rmtree(doomed)
        removed.append(path)
    return removed


# ---------------------------------------------------------------- RNG
def _rng_state() -> dict[str, Any]:
    """Every global RNG as tensors and plain containers (what ``weights_only`` loads)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": (version, list(internal), gauss),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)),
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], source: Path) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    cuda = state.get("torch_cuda", [])
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    elif cuda:  # another machine: the loop's per-step seeds still make the draws exact
        log.warning("%s: %d CUDA RNG states not restored on this machine", source, len(cuda))


# ---------------------------------------------------------------- file I/O
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_torch(obj: Any, path: Path) -> None:
    torch.save(obj, path)
    _fsync(path)


def _load_torch(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: unreadable ({type(error).__name__}: {error})") from None


def load_weights(path: Path, module: nn.Module) -> None:
    """Load a safetensors state dict into ``module``; keys and shapes must match exactly.

    Raises :class:`CheckpointError` naming the file and the missing / unexpected keys or the
    size mismatch.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        missing, unexpected = load_model(module, path, strict=False)
    except (SafetensorError, RuntimeError) as error:
        one_line = " ".join(str(error).split())  # torch lists the size mismatches on lines
        raise CheckpointError(f"{path}: does not load into {type(module).__name__}: "
                              f"{one_line}") from None  # fmt: skip
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(sorted(missing))}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(sorted(unexpected))}")
    if problems:
        raise CheckpointError(f"{path}: does not match {type(module).__name__}: "
                              + "; ".join(problems))  # fmt: skip


# ---------------------------------------------------------------- save / load
def save_checkpoint(root: str | os.PathLike, step: int, fingerprint: str,
                    state: TrainingState) -> Path:  # fmt: skip
    """Write the checkpoint of ``step`` under ``root`` atomically; return its folder.

    An existing checkpoint of the same step is replaced. Leftover temporary folders under
    ``root`` are removed first, so only one process (the main rank) may save into a root.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if _TEMP_DIR.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.tmp"
    tmp.mkdir()
    try:
        save_model(state.model, str(tmp / MODEL_FILE))
        _fsync(tmp / MODEL_FILE)
        info: dict[str, Any] = {"format_version": FORMAT_VERSION, "step": step,
                                "fingerprint": fingerprint}  # fmt: skip
        if state.ema is not None:
            save_model(state.ema.module, str(tmp / EMA_FILE))
            _fsync(tmp / EMA_FILE)
            info["ema_updates"] = int(state.ema.n_averaged)
        _save_torch(state.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        if state.lr_schedule is not None:
            _save_torch(state.lr_schedule.state_dict(), tmp / LR_SCHEDULE_FILE)
        _save_torch(_rng_state(), tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(info, indent=1) + "\n")  # last: marks it done
        _fsync(tmp / STATE_FILE)
        _fsync(tmp)
        replace_directory(tmp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(path: str | os.PathLike, state: TrainingState) -> dict[str, Any]:
    """Restore a checkpoint folder into ``state`` and the global RNGs; return its ``state.json``.

    Each object of ``state`` that is set must have its file in the checkpoint, and the model's
    (and EMA's) keys and shapes must match exactly (:class:`CheckpointError` otherwise, naming
    the file).
    """
    directory = Path(path)
    info = read_state(directory)
    load_weights(directory / MODEL_FILE, state.model)
    if state.ema is not None:
        if "ema_updates" not in info:
            raise CheckpointError(f"{directory}: an EMA was passed but none was saved")
        load_weights(directory / EMA_FILE, state.ema.module)
        state.ema.n_averaged.fill_(info["ema_updates"])
    try:
        state.optimizer.load_state_dict(_load_torch(directory / OPTIMIZER_FILE))
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{directory / OPTIMIZER_FILE}: {error}") from None
    if state.lr_schedule is not None:
        state.lr_schedule.load_state_dict(_load_torch(directory / LR_SCHEDULE_FILE))
    _restore_rng(_load_torch(directory / RNG_FILE), directory / RNG_FILE)
    return info


def load_model_weights(path_or_dir: str | os.PathLike, model: nn.Module,
                       use_ema: bool = False) -> Path:  # fmt: skip
    """Load inference weights into ``model``; return the file read.

    ``path_or_dir`` is a ``.safetensors`` file, a checkpoint folder, or a checkpoint root (its
    latest checkpoint). With ``use_ema`` the folder's ``ema.safetensors`` is read instead of
    ``model.safetensors``.
    """
    path = Path(path_or_dir)
    if path.is_dir() and not (path / STATE_FILE).exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise MissingInputError(f"{path}: no checkpoint found")
        path = latest
    if path.is_dir():
        path = path / (EMA_FILE if use_ema else MODEL_FILE)
        if use_ema and not path.exists():
            raise CheckpointError(f"{path.parent}: no {EMA_FILE} (the run did not use an EMA)")
    load_weights(path, model)
    return path

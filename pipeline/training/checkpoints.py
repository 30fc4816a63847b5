"""Training checkpoints as safetensors, written atomically, resumable from the latest.

Layout under a checkpoint root (a DVC output with ``persist: true``)::

    <root>/step-000000100/
        model.safetensors       model state dict (tied tensors stored once, see "aliases")
        ema.safetensors         optional EMA weights (+ ema.json for an opaque EMA state)
        optimizer.safetensors   optimizer tensors, keys like ``state.0.exp_avg``
        optimizer.json          the rest of ``optimizer.state_dict()`` (param_groups, numbers)
        scheduler.json          optional LR scheduler state (+ scheduler.safetensors if tensors)
        rng.safetensors         torch CPU (and CUDA) RNG states as uint8 tensors
        state.json              {"step", "extra", "rng": python/numpy states, "components"}

A checkpoint is written under ``<root>/.step-000000100.tmp`` and renamed into place only once
every file is written and synced, so a directory named ``step-*`` is always complete. Temporary
directories left by a killed run are never listed and are removed by the next save.

Nothing here unpickles: tensors come from safetensors and everything else from JSON, whose
non-JSON values (int dict keys, tuples, non-finite floats, nested tensors) are spelled with
``{"__dict__": ...}``, ``{"__tuple__": ...}``, ``{"__float__": ...}`` and ``{"__tensor__": ...}``.

Typical loop::

    if (ckpt := latest_checkpoint(root)) is not None:
        start = load_checkpoint(ckpt, model, optimizer, ema, scheduler)["step"]
    for step in range(start + 1, steps + 1):
        loss = ...
        check_loss(loss, step, root)  # NonFiniteLossError; the last good checkpoint stays
        if is_checkpoint_step(step, save_every, steps, keep_steps={negatives_step}):
            save_checkpoint(root, step, model, optimizer, ema, scheduler)
            prune_checkpoints(root, keep_last, protect_steps={negatives_step})
    checkpoint_for_step(root, negatives_step)  # FileNotFoundError if it is missing
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pipeline.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STEP_DIGITS = 9
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
EMA_STRUCTURE_FILE = "ema.json"
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_STRUCTURE_FILE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
SCHEDULER_TENSORS_FILE = "scheduler.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"

_STEP_DIR = re.compile(r"^step-(\d+)$")
_TEMP_DIR = re.compile(r"^\.step-\d+\.(tmp|old|del)$")
_ALIASES_KEY = "paha.aliases"
_KIND_KEY = "paha.kind"
_ORDER_KEY = "paha.order"

Unwrap = Callable[[nn.Module], nn.Module]


class CheckpointError(InputError, RuntimeError):
    """A checkpoint is missing a file, is unreadable, or does not match what it is loaded into."""


class NonFiniteLossError(FloatingPointError):
    """The training loss (or a weight about to be saved) is NaN or infinite."""


# ---------------------------------------------------------------- paths and listing
def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint for ``step``: ``step-000000100``."""
    return f"step-{step:0{STEP_DIGITS}d}"


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first.

    Only directories named ``step-<digits>`` that hold ``state.json`` count; temporary
    directories of an interrupted save (``.step-*.tmp``) are ignored. A missing root is empty.
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
    """The checkpoint for exactly ``step``; FileNotFoundError naming the steps available."""
    for found_step, path in list_checkpoints(root):
        if found_step == step:
            return path
    available = ", ".join(str(s) for s, _ in list_checkpoints(root)) or "none"
    raise FileNotFoundError(f"{root}: no checkpoint for step {step} (steps available: {available})")


def is_checkpoint_step(
    step: int, save_every: int, last_step: int, keep_steps: Iterable[int] = ()
) -> bool:
    """Whether a loop should save after ``step``: every ``save_every``, the last step, and
    every step in ``keep_steps`` (e.g. ``negatives.checkpoint_step``, which need not be a
    multiple of ``save_every``)."""
    return step % save_every == 0 or step == last_step or step in set(keep_steps)


def prune_checkpoints(
    root: str | os.PathLike, keep_last: int, protect_steps: Iterable[int] = ()
) -> list[Path]:
    """Delete complete checkpoints older than the last ``keep_last``, except ``protect_steps``.

    Each one is renamed to a hidden name before it is removed, so an interrupted prune never
    leaves a partial ``step-*`` directory. Returns the paths removed.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last must be >= 0, got {keep_last}")
    protect = set(protect_steps)
    found = list_checkpoints(root)
    old = found[: len(found) - keep_last] if keep_last else found
    removed = []
    for step, path in old:
        if step in protect:
            continue
        doomed = path.with_name(f".{path.name}.del")
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        shutil.rmtree(doomed)
        removed.append(path)
    return removed


# ---------------------------------------------------------------- NaN guard
def check_loss(
    loss: float | torch.Tensor, step: int, root: str | os.PathLike | None = None
) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite.

    The message names the step and, given ``root``, the last good checkpoint to resume from
    (saves happen after this check, so a NaN step never reaches disk).
    """
    value = float(loss.detach().float().cpu()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isfinite(value):
        return
    message = f"loss is {value} at step {step}; training stopped"
    if root is not None:
        last = latest_checkpoint(root)
        message += (
            f"; the last good checkpoint is {last}" if last else f"; no checkpoint under {root}"
        )
    raise NonFiniteLossError(message)


def _check_finite(tensors: Mapping[str, torch.Tensor], what: str, step: int) -> None:
    bad = [
        key
        for key, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        shown = ", ".join(bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        raise NonFiniteLossError(
            f"not saving step {step}: {what} has NaN/inf values in {shown}; "
            "the previous checkpoint is kept"
        )


# ---------------------------------------------------------------- model state dicts
def unwrap_model(model: nn.Module, unwrap: Unwrap | None = None) -> nn.Module:
    """The bare model inside DDP/DataParallel/``torch.compile``/accelerate-style wrappers.

    ``unwrap`` (e.g. ``accelerator.unwrap_model``) is applied first when given. Then any module
    whose only child is its ``.module`` (DDP, DataParallel, accelerate) or that has
    ``._orig_mod`` (``torch.compile``) is peeled off, repeatedly.
    """
    if unwrap is not None:
        model = unwrap(model)
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
            if not isinstance(inner, nn.Module):
                return model
            children = list(model.children())
            if not (
                isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel)
                or (len(children) == 1 and children[0] is inner)
            ):
                return model
        model = inner


def _view_key(tensor: torch.Tensor) -> tuple:
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _dedupe(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safe for safetensors: one copy of each tied tensor plus ``alias -> name``.

    Exact aliases (same storage, offset, shape, stride, dtype: tied weights) are stored once.
    Other tensors overlapping a storage already seen, and non-contiguous ones, are copied.
    Everything is detached and moved to the CPU.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    views: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach()
        if tensor.numel() == 0:
            tensors[name] = torch.empty(tensor.shape, dtype=tensor.dtype)
            continue
        view = _view_key(tensor)
        if view in views:
            aliases[name] = views[view]
            continue
        views[view] = name
        cpu = tensor.to("cpu").contiguous()  # no copy for a contiguous CPU tensor
        if cpu.untyped_storage().data_ptr() in storages:
            cpu = cpu.clone()
        storages.add(cpu.untyped_storage().data_ptr())
        tensors[name] = cpu
    return tensors, aliases


def _load_state_into(
    module: nn.Module, state: dict[str, torch.Tensor], source: Path, strict: bool
) -> None:
    """``module.load_state_dict`` with an error naming ``source`` and the mismatched keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    problems = []
    if missing and strict:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected and strict:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"size mismatch: {'; '.join(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source}: does not match {type(module).__name__}: " + "; ".join(problems)
        )
    if missing or unexpected:
        log.warning(
            "%s: non-strict load; missing keys: %s; unexpected keys: %s",
            source,
            missing,
            unexpected,
        )
    state = {key: value for key, value in state.items() if key in expected}
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: {error}") from None


# ---------------------------------------------------------------- structures <-> JSON + tensors
def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``value``; tensors go into ``tensors`` under dotted ``path`` keys."""
    if isinstance(value, torch.Tensor):
        key, n = path or "tensor", 1
        while key in tensors:
            n += 1
            key = f"{path}#{n}"
        tensors[key] = value
        return {"__tensor__": key}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        sub = (lambda k: f"{path}.{k}") if path else str
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, sub(k), tensors) for k, v in value.items()}
        for k in value:
            if not (k is None or isinstance(k, bool | int | float | str)):
                raise TypeError(f"cannot store the key {k!r} of {path or 'the state'} in JSON")
        pairs = [[_encode(k, "", {}), _encode(v, sub(k), tensors)] for k, v in value.items()]
        return {"__dict__": pairs}
    raise TypeError(f"cannot store {path or 'the state'} ({type(value).__name__}) in a checkpoint")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((marker, inner),) = value.items()
        if marker == "__tensor__":
            return tensors[inner]
        if marker == "__tuple__":
            return tuple(_decode(v, tensors) for v in inner)
        if marker == "__float__":
            return float(inner)
        if marker == "__dict__":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
    return {k: _decode(v, tensors) for k, v in value.items()}


# ---------------------------------------------------------------- file I/O
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file and sync it to disk."""
    save_file(tensors, str(path), metadata={"format": "pt", **metadata})
    _fsync(path)


def _write_json(data: Any, path: Path) -> None:
    """Write strict JSON (no NaN, key order kept: state dicts are ordered) and sync it."""
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    _fsync(path)


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on the CPU) and the metadata of a safetensors file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            names = handle.keys()
            return {key: handle.get_tensor(key) for key in names}, metadata
    except SafetensorError as error:
        raise CheckpointError(f"{path}: unreadable safetensors file ({error})") from None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable JSON ({error})") from None


def _save_structure(
    obj: Any,
    directory: Path,
    json_name: str,
    tensor_name: str,
    always: bool,
    metadata: dict[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Write a nested state as ``json_name`` plus its tensors as ``tensor_name``.

    The tensor file is written when there are tensors or ``always``. Returns the tensors.
    """
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(obj, "", tensors)
    if tensors or always:
        cpu, aliases = _dedupe(tensors)
        metadata = {**(metadata or {}), _ALIASES_KEY: json.dumps(aliases)}
        _save_tensors(cpu, directory / tensor_name, metadata)
    _write_json({"format_version": FORMAT_VERSION, "structure": structure}, directory / json_name)
    return tensors


def _load_structure(directory: Path, json_name: str, tensor_name: str) -> Any:
    data = _read_json(directory / json_name)
    tensors: dict[str, torch.Tensor] = {}
    if (directory / tensor_name).exists():
        tensors, metadata = _read_tensors(directory / tensor_name)
        for alias, name in json.loads(metadata.get(_ALIASES_KEY, "{}")).items():
            tensors[alias] = tensors[name]
    try:
        return _decode(data["structure"], tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / json_name}: malformed structure ({error})") from None


# ---------------------------------------------------------------- EMA
def _ema_kind(ema: Any) -> str:
    if isinstance(ema, nn.Module):
        return "module"
    if isinstance(ema, list | tuple) and all(isinstance(t, torch.Tensor) for t in ema):
        return "params"
    if isinstance(ema, Mapping) and all(isinstance(t, torch.Tensor) for t in ema.values()):
        return "tensors"
    if all(callable(getattr(ema, method, None)) for method in ("state_dict", "load_state_dict")):
        return "state_dict"
    raise TypeError(
        "ema must be an nn.Module, a list of tensors aligned with model.parameters(), "
        f"a dict of tensors, or have state_dict()/load_state_dict(); got {type(ema).__name__}"
    )


def _save_ema(ema: Any, model: nn.Module, directory: Path, step: int, check: bool) -> None:
    kind = _ema_kind(ema)
    if kind == "state_dict":
        state = ema.state_dict()
        if check:
            found: dict[str, torch.Tensor] = {}
            _encode(state, "", found)
            _check_finite(found, "the EMA", step)
        metadata = {_KIND_KEY: kind}
        _save_structure(state, directory, EMA_STRUCTURE_FILE, EMA_FILE, True, metadata)
        return
    order: list[str] = []
    if kind == "module":
        state = ema.state_dict()
    elif kind == "params":
        names = [name for name, _ in model.named_parameters()]
        if len(names) != len(ema):
            raise ValueError(
                f"ema has {len(ema)} tensors but the model has {len(names)} parameters"
            )
        state = dict(zip(names, ema, strict=True))
        order = names
    else:
        state = dict(ema)
    if check:
        _check_finite(state, "the EMA", step)
    tensors, aliases = _dedupe(state)
    metadata = {_KIND_KEY: kind, _ALIASES_KEY: json.dumps(aliases)}
    if order:
        metadata[_ORDER_KEY] = json.dumps(order)
    _save_tensors(tensors, directory / EMA_FILE, metadata)


def _load_ema(ema: Any, directory: Path, strict: bool) -> None:
    kind = _ema_kind(ema)
    path = directory / EMA_FILE
    if not path.exists():
        raise CheckpointError(f"{directory}: an EMA was passed but none was saved ({EMA_FILE})")
    if kind == "state_dict":
        if not (directory / EMA_STRUCTURE_FILE).exists():
            raise CheckpointError(
                f"{path}: holds named EMA weights, not a state_dict() (no {EMA_STRUCTURE_FILE})"
            )
        ema.load_state_dict(_load_structure(directory, EMA_STRUCTURE_FILE, EMA_FILE))
        return
    tensors, metadata = _read_tensors(path)
    saved_kind = metadata.get(_KIND_KEY)
    if saved_kind not in ("module", "params", "tensors"):
        raise CheckpointError(f"{path}: holds an opaque EMA state_dict(), not named weights")
    for alias, name in json.loads(metadata.get(_ALIASES_KEY, "{}")).items():
        tensors[alias] = tensors[name]
    if kind == "module":
        _load_state_into(ema, tensors, path, strict)
        return
    if kind == "params":
        order = json.loads(metadata.get(_ORDER_KEY, "[]"))
        if saved_kind != "params" or len(order) != len(ema):
            raise CheckpointError(
                f"{path}: holds {len(order) if saved_kind == 'params' else 'no'} EMA parameter "
                f"tensors in order, expected {len(ema)}"
            )
        for target, name in zip(ema, order, strict=True):
            _copy_into(target, tensors[name], path)
        return
    missing, unexpected = sorted(set(ema) - set(tensors)), sorted(set(tensors) - set(ema))
    if strict and (missing or unexpected):
        raise CheckpointError(f"{path}: missing keys: {missing}; unexpected keys: {unexpected}")
    for key in set(ema) & set(tensors):
        _copy_into(ema[key], tensors[key], path)


def _copy_into(target: torch.Tensor, value: torch.Tensor, source: Path) -> None:
    if target.shape != value.shape:
        raise CheckpointError(
            f"{source}: size mismatch: checkpoint {tuple(value.shape)} vs {tuple(target.shape)}"
        )
    with torch.no_grad():
        target.copy_(value)


# ---------------------------------------------------------------- RNG
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch.cuda.{index}"] = state
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, plain


def _restore_rng(directory: Path, plain: Mapping[str, Any]) -> None:
    if "python" in plain:
        version, internal, gauss = plain["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in plain:
        name, keys, pos, has_gauss, cached = plain["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if not (directory / RNG_FILE).exists():
        return
    tensors, _ = _read_tensors(directory / RNG_FILE)
    torch.set_rng_state(tensors["torch.cpu"])
    cuda = [tensors[f"torch.cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("%s: %d CUDA RNG states not restored on this machine", directory, len(cuda))


# ---------------------------------------------------------------- save / load
def _clean_temporaries(root: Path) -> None:
    for entry in root.iterdir():
        if _TEMP_DIR.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: Any = None,
    lr_scheduler: Any = None,
    extra: Mapping[str, Any] | None = None,
    *,
    unwrap: Unwrap | None = None,
    save_rng: bool = True,
    check_finite: bool = True,
) -> Path:
    """Write the checkpoint for ``step`` under ``root`` atomically and return its directory.

    ``model`` may be wrapped (DDP, accelerate, ``torch.compile``; see :func:`unwrap_model`).
    ``ema`` is an nn.Module, a list of tensors aligned with ``model.parameters()``, a dict of
    tensors, or an object with ``state_dict()``/``load_state_dict()`` (diffusers' EMAModel).
    ``extra`` must be plain JSON (no NaN). With ``check_finite`` a NaN/inf weight raises
    :class:`NonFiniteLossError` before anything is written. An existing checkpoint for the
    same step is replaced. Leftover temporary directories under ``root`` are removed first,
    so only one process (the main rank) may save into a root.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    try:
        extra = json.loads(json.dumps(dict(extra or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be plain JSON without NaN/inf: {error}") from None
    model = unwrap_model(model, unwrap)
    model_tensors, model_aliases = _dedupe(model.state_dict())
    if check_finite:
        _check_finite(model_tensors, "the model", step)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(root)
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.tmp"
    tmp.mkdir()
    try:
        components = ["model"]
        _save_tensors(model_tensors, tmp / MODEL_FILE, {_ALIASES_KEY: json.dumps(model_aliases)})
        del model_tensors
        if ema is not None:
            _save_ema(ema, model, tmp, step, check_finite)
            components.append("ema")
        if optimizer is not None:
            _save_structure(
                optimizer.state_dict(), tmp, OPTIMIZER_STRUCTURE_FILE, OPTIMIZER_FILE, always=True
            )
            components.append("optimizer")
        if lr_scheduler is not None:
            _save_structure(
                lr_scheduler.state_dict(), tmp, SCHEDULER_FILE, SCHEDULER_TENSORS_FILE, False
            )
            components.append("scheduler")
        state: dict[str, Any] = {"format_version": FORMAT_VERSION, "step": step, "extra": extra}
        if save_rng:
            rng_tensors, state["rng"] = _rng_state()
            _save_tensors(rng_tensors, tmp / RNG_FILE, {})
            components.append("rng")
        state["components"] = components
        _write_json(state, tmp / STATE_FILE)  # written last: marks the directory complete
        _fsync(tmp)
        if final.exists():
            old = root / f".{final.name}.old"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: Any = None,
    lr_scheduler: Any = None,
    strict: bool = True,
    *,
    unwrap: Unwrap | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint directory into the given objects; return its ``state.json``.

    The result holds ``step`` and ``extra`` (and the saved RNG states). Each object passed must
    have its file in the checkpoint (:class:`CheckpointError` otherwise). With ``strict`` the
    model's (and a module EMA's) keys must match exactly; the error names the file and the
    missing/unexpected keys. Shape mismatches always fail. RNG states (python, numpy, torch CPU
    and CUDA) are restored when saved and ``restore_rng`` is set.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    state = _read_json(directory / STATE_FILE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{directory / STATE_FILE}: no integer 'step'")
    tensors, metadata = _read_tensors(directory / MODEL_FILE)
    for alias, name in json.loads(metadata.get(_ALIASES_KEY, "{}")).items():
        tensors[alias] = tensors[name]
    _load_state_into(unwrap_model(model, unwrap), tensors, directory / MODEL_FILE, strict)
    del tensors
    if ema is not None:
        _load_ema(ema, directory, strict)
    if optimizer is not None:
        if not (directory / OPTIMIZER_FILE).exists():
            raise CheckpointError(f"{directory}: an optimizer was passed but none was saved")
        optimizer_state = _load_structure(directory, OPTIMIZER_STRUCTURE_FILE, OPTIMIZER_FILE)
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"{directory / OPTIMIZER_FILE}: {error}") from None
    if lr_scheduler is not None:
        if not (directory / SCHEDULER_FILE).exists():
            raise CheckpointError(f"{directory}: an LR scheduler was passed but none was saved")
        lr_scheduler.load_state_dict(
            _load_structure(directory, SCHEDULER_FILE, SCHEDULER_TENSORS_FILE)
        )
    if restore_rng:
        _restore_rng(directory, state.get("rng", {}))
    return state


def load_model_weights(
    path_or_dir: str | os.PathLike,
    model: nn.Module,
    use_ema: bool = False,
    strict: bool = True,
    *,
    unwrap: Unwrap | None = None,
) -> Path:
    """Load inference weights into ``model``; return the file read.

    ``path_or_dir`` is a ``.safetensors`` file, a checkpoint directory, or a checkpoints root
    (its latest checkpoint). With ``use_ema`` the directory's ``ema.safetensors`` is used; an
    EMA saved as a parameter list (or a diffusers EMAModel's ``shadow_params``) supplies the
    parameters and ``model.safetensors`` the buffers.
    """
    path = Path(path_or_dir)
    if path.is_dir() and not (path / STATE_FILE).exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: no checkpoint found")
        path = latest
    model = unwrap_model(model, unwrap)
    if path.is_file():
        tensors, metadata = _read_tensors(path)
        for alias, name in json.loads(metadata.get(_ALIASES_KEY, "{}")).items():
            tensors[alias] = tensors[name]
        _load_state_into(model, tensors, path, strict)
        return path
    if not use_ema:
        return load_model_weights(path / MODEL_FILE, model, strict=strict)
    ema_path = path / EMA_FILE
    if not ema_path.exists():
        raise CheckpointError(f"{path}: no {EMA_FILE} (the run did not use an EMA)")
    tensors, metadata = _read_tensors(ema_path)
    kind = metadata.get(_KIND_KEY)
    if kind in ("module", "tensors"):
        return load_model_weights(ema_path, model, strict=strict)
    if kind == "params":
        params = tensors
    else:  # an opaque state_dict(): diffusers' EMAModel keeps shadow_params in parameter order
        structure = _load_structure(path, EMA_STRUCTURE_FILE, EMA_FILE)
        shadow = structure.get("shadow_params") if isinstance(structure, dict) else None
        names = [name for name, _ in model.named_parameters()]
        if not isinstance(shadow, list) or len(shadow) != len(names):
            raise CheckpointError(f"{ema_path}: EMA state has no shadow_params matching the model")
        params = dict(zip(names, shadow, strict=True))
    base, base_meta = _read_tensors(path / MODEL_FILE)
    # Parameters come from the EMA (tied aliases share them), buffers from the model file.
    for alias, name in json.loads(base_meta.get(_ALIASES_KEY, "{}")).items():
        base[alias] = base[name]
        if name in params:
            params[alias] = params[name]
        elif alias in params:
            params[name] = params[alias]
    merged = {**base, **params}
    _load_state_into(model, merged, ema_path, strict)
    return ema_path


def weights_digest(module: torch.nn.Module) -> str:
    """Short hash of a module's weights (to tell whether two runs used the same weights)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# Settings that may change without invalidating a run's checkpoints: extending a run, saving,
# logging or evaluating more often must still resume it.
RESUMABLE_CHANGES = frozenset({"steps", "save_every", "keep_checkpoints", "log_every",
                               "eval_every", "preview_steps", "workers"})  # fmt: skip


def fingerprint(params: Any, data_ids: Iterable[str], extra: Mapping | None = None) -> str:
    """Hash of what a run trains on: its params section (a pydantic model, less
    :data:`RESUMABLE_CHANGES`), its data ids and ``extra`` (e.g. weights digests)."""
    settings = params.model_dump(exclude=set(RESUMABLE_CHANGES))
    blob = json.dumps({"params": settings, "data": sorted(data_ids), "extra": dict(extra or {})},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resumable_checkpoint(root: str | os.PathLike, run_fingerprint: str) -> Path | None:
    """The latest checkpoint under ``root`` saved with ``extra.fingerprint == run_fingerprint``."""
    latest = latest_checkpoint(root)
    if latest is None:
        return None
    state = json.loads((Path(latest) / STATE_FILE).read_text())
    return latest if state.get("extra", {}).get("fingerprint") == run_fingerprint else None


def checkpoint_to_resume(root: str | os.PathLike, run_fingerprint: str) -> Path | None:
    """:func:`resumable_checkpoint`; when there is none, checkpoints of other runs under
    ``root`` are deleted (with a warning) so that the new run starts afresh."""
    latest = resumable_checkpoint(root, run_fingerprint)
    if latest is None and list_checkpoints(root):
        log.warning("checkpoints in %s were trained with other settings: starting afresh", root)
        for _, path in list_checkpoints(root):
            shutil.rmtree(path, ignore_errors=True)
    return latest

"""Where and in what precision the networks run: the ``runtime`` params section.

Every stage that runs a network (training, negatives, the classifiers, inference, SyncNet, the
gesture autoencoder, evaluation) and ``paha animate`` resolve ``runtime.device`` once with
:func:`resolve_device` and move their models and tensors to the result; sampling-style work
(DDIM, the classifiers' guidance gradients, negatives, the metric networks) runs under
:func:`autocast` with ``runtime.precision``. This module is the only place that names the CUDA
device type: everything else receives a ``torch.device``.

Settings of ``runtime.device``:

- ``auto``: the current CUDA device when ``torch.cuda.is_available()``, else the CPU;
- ``cpu``;
- ``cuda``: the current CUDA device (an error when there is none);
- ``cuda:N``: CUDA device ``N`` (an error when ``N >= torch.cuda.device_count()``).

A worker pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` (the Prefect flows) sees it as
``cuda:0``, so ``auto`` / ``cuda`` run there.
"""

from __future__ import annotations

import contextlib
import os
import re

import torch

from pipeline.errors import ConfigError

CUDA = "cuda"  # the one spelling of the accelerator's device type in the project
CPU = torch.device("cpu")  # the default device of the builders (tests, CPU-only callers)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_SETTING = re.compile(rf"^(auto|cpu|{CUDA}(:(\d+))?)$")


def resolve_device(setting: str | torch.device, name: str = "runtime.device") -> torch.device:
    """The ``torch.device`` of a ``runtime.device`` setting (module docstring).

    Args:
        setting: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a ``torch.device`` is checked the
            same way).
        name: what the setting is called in error messages (``--device`` for the CLI).

    Raises:
        ConfigError: one line naming ``name``: an unknown setting (``tpu``), CUDA asked for on a
            host without it, or a CUDA index past ``torch.cuda.device_count()``.
    """
    text = str(setting).strip()
    match = _SETTING.match(text)
    if match is None:
        raise ConfigError(f"{name}: {text!r} is not one of auto, cpu, {CUDA}, {CUDA}:N")
    if text == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if text == "auto":
        return torch.device(CUDA if available else "cpu")
    if not available:
        raise ConfigError(f"{name}: {text!r} asked for, but this host has no CUDA device "
                          "(torch.cuda.is_available() is False); use auto or cpu")  # fmt: skip
    index = match.group(3)
    if index is not None and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"{name}: {text!r} asked for, but this host has {count} CUDA "
                          f"device(s) ({CUDA}:0 .. {CUDA}:{count - 1})")  # fmt: skip
    return torch.device(text)


def is_cuda(device: torch.device) -> bool:
    """Whether ``device`` is a CUDA device."""
    return torch.device(device).type == CUDA


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for inference-style work on ``device``: ``torch.autocast`` with bf16 or
    fp16, a no-op for ``fp32`` (the CPU supports bf16 and fp16 autocast too).

    Raises:
        ConfigError: ``precision`` is not ``fp32``, ``bf16`` or ``fp16``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"runtime.precision: {precision!r} is not one of {list(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for an empty module."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def make_accelerator(device: torch.device, **kwargs):
    """An ``accelerate.Accelerator`` that runs on ``device``.

    ``cpu=True`` for the CPU. For ``cuda:N`` in a single-process run, CUDA device ``N`` becomes
    the current device (accelerate places a one-process run on the current one); under
    ``accelerate launch`` every rank keeps the GPU accelerate gives it. ``kwargs`` go to the
    ``Accelerator`` (e.g. ``mixed_precision``).
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    device = torch.device(device)
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if is_cuda(device) and device.index is not None and single:
        torch.cuda.set_device(device)
    # DDP's gradients as views into its all-reduce buckets: no second fp32 copy of every
    # gradient (6 GiB per card for the paper's 1.58 B-parameter UniVDM; benchmarks/memory_plan).
    ddp = DistributedDataParallelKwargs(gradient_as_bucket_view=True)
    return Accelerator(cpu=device.type == "cpu", kwargs_handlers=[ddp], **kwargs)


__all__ = [
    "CPU", "CUDA", "PRECISIONS", "autocast", "is_cuda", "make_accelerator", "module_device",
    "resolve_device",
]  # fmt: skip

"""The ablation grid (Table 3 at sample scale): the variants, the seeds, the replicates.

:data:`VARIANTS` names each row of Table 3 by the params it changes, :data:`SEED_KEYS` the seeds
of the method under test; :func:`cell_overrides` is one cell's params, :func:`pending_cells` the
cells an ``ablation.json`` still lacks, :func:`machine_fingerprint` what makes two runs of one
seed comparable (see :mod:`pipeline.orchestration.ablation`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError

# The seeds of the method under test (the package docstring names the ones left fixed).
SEED_KEYS = ("train_univdm.seed", "negatives.seed",
             "train_classifier.face.seed", "train_classifier.nonface.seed",
             "infer.seed")  # fmt: skip


# Table 3's rows as params overrides (dotted keys of params.yaml).
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_par": {"train_univdm.par.enabled": False},
    "no_nonface_guidance": {"infer.lambda_nonface": 0.0},
    "no_face_guidance": {"infer.lambda_face": 0.0},
    "no_par_no_guidance": {
        "train_univdm.par.enabled": False,
        "infer.lambda_nonface": 0.0,
        "infer.lambda_face": 0.0,
    },  # fmt: skip
    "no_augmentation": {"negatives.augment": False},
}


# The variant whose finished run a cell starts from, when not ``full``: only the inference
# params differ from it, so only infer and evaluate rerun.
STARTS_FROM = {"no_par_no_guidance": "no_par"}


def starts_from(variant: str) -> str | None:
    """The variant whose run of the same seed ``variant`` starts from (None for ``full``)."""
    return None if variant == "full" else STARTS_FROM.get(variant, "full")


def _depth(variant: str) -> int:
    parent = starts_from(variant)
    return 0 if parent is None else 1 + _depth(parent)


def _best_numpy_simd() -> str:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    order = ("AVX512_SPR", "AVX512_ICL", "AVX512_CNL", "AVX512_CLX", "AVX512_SKX", "AVX512F",
             "AVX2", "AVX", "SSE42", "ASIMD", "NEON", "VSX4", "VSX3", "VSX2", "VX")  # fmt: skip
    return next((name for name in order if features.get(name)), "baseline")


def machine_fingerprint() -> str:
    """What decides a run's floating-point path here, e.g. ``"Intel(R) Xeon(R) Processor;
    numpy AVX512_ICL; torch AVX512"`` (plus ``"; cuda <GPU name>"`` where torch sees a GPU).

    The processor model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere), the widest
    SIMD numpy dispatches its vectorised math to, and torch's CPU kernel capability. Two runs of
    one seed are bit-identical only on the same fingerprint (see the package docstring).
    """
    import platform

    import torch

    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cpu = cpu or platform.processor() or platform.machine()
    parts = [cpu, f"numpy {_best_numpy_simd()}", f"torch {torch.backends.cpu.get_cpu_capability()}"]
    if torch.cuda.is_available():
        parts.append(f"cuda {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)


def replicate(cell: Mapping) -> tuple[int, str | None]:
    """A cell's replicate: ``(seed, machine)``; machine None for cells that did not record it."""
    return int(cell["seed"]), cell.get("machine")


def cell_overrides(variant: str, seed: int) -> dict[str, Any]:
    """The params overrides of one cell: the variant's, plus every :data:`SEED_KEYS` = seed."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown ablation variant {variant!r}; known: {list(VARIANTS)}")
    return {key: int(seed) for key in SEED_KEYS} | VARIANTS[variant]


def set_dotted(params: dict, key: str, value: Any) -> None:
    """Set ``params[a][b][c] = value`` for ``key = "a.b.c"``, in place.

    Raises ConfigError when a part of the key is missing or not a section: an override names an
    existing key, so a typo fails before hours of compute rather than adding an ignored key.
    """
    *sections, leaf = key.split(".")
    node = params
    for depth, name in enumerate(sections):
        node = node.get(name) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise ConfigError(f"params.yaml: no section {'.'.join(sections[: depth + 1])!r} "
                              f"for the override {key!r}")  # fmt: skip
    if leaf not in node:
        raise ConfigError(f"params.yaml: no key {key!r} to override")
    if isinstance(node[leaf], Mapping):
        raise ConfigError(f"params.yaml: {key!r} is a section; an override sets one value")
    node[leaf] = value


def apply_overrides(params: Mapping, overrides: Mapping[str, Any]) -> dict:
    """A deep copy of ``params`` with each dotted-key override set (see :func:`set_dotted`)."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        set_dotted(out, key, value)
    return out


def pending_cells(cells: Sequence[Mapping], variants: Sequence[str], seeds: Sequence[int],
                  machine: str | None = None) -> list[tuple[str, int]]:  # fmt: skip
    """The (variant, seed) pairs still to run on ``machine``, seed by seed, each variant after the
    one it starts from (:func:`starts_from`: ``full`` first); a cell already in ``cells`` of the
    same machine with the same overrides is done."""
    done = {(c["variant"], c["seed"]) for c in cells if c["variant"] in VARIANTS
            and c.get("machine") == machine
            and c.get("overrides") == cell_overrides(c["variant"], c["seed"])}  # fmt: skip
    ordered = sorted(dict.fromkeys(variants), key=_depth)
    return [(v, s) for s in dict.fromkeys(seeds) for v in ordered if (v, s) not in done]


def load_cells(path: Path) -> list[dict]:
    """The cells of an existing ``ablation.json`` (none when the file does not exist)."""
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error}); move it away to start over") from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and {"variant", "seed"} <= set(c) for c in cells
    ):
        raise InputError(f"{path}: no list of cells with 'variant' and 'seed'; move it away "
                         "to start over")  # fmt: skip
    return cells

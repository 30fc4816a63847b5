"""The paper's Table 3 (core components) at sample scale, over seeds: ``paha ablate``.

**The grid.** :data:`VARIANTS` names each row of Table 3 by the params it changes (``full`` is
params.yaml as committed): ``no_par`` (``train_univdm.par.enabled: false``),
``no_nonface_guidance`` (``infer.lambda_nonface: 0``), ``no_face_guidance``
(``infer.lambda_face: 0``), ``no_par_no_guidance`` (all three) and ``no_augmentation``
(``negatives.augment: false``). Every run computes the unguided, SG and DG videos
(``infer@none``, ``infer@sg``, ``infer@dg``), so DG vs SG comes from each run.

**A seed** sets every key of :data:`SEED_KEYS` to the same value: the randomness of the method
under test (UniVDM training, the PCE negatives and their held-out split, both classifiers,
inference noise). The data stays fixed (``corpus.seed``, ``curate.split_seed``), so does the VAE
(``train_vae.seed``: it stands in for the paper's pretrained, frozen Stable Diffusion VAE, which
no Table 3 row retrains) and so do the measuring instruments (``train_gesture_ae.seed``,
``train_syncnet.seed``, ``evaluate.div_seed``): every cell is judged by the same FGD/Div.
autoencoder and SyncNet, so a paired difference between two variants is the method's, not the
ruler's.

**A replicate** is a (seed, machine) pair: each cell records :func:`machine_fingerprint` (the
processor, the SIMD numpy and torch dispatch to, the GPU). One seed on two machines gives two
runs that differ like two seeds do (numpy's vectorised sin/cos differ in the last bit between
AVX2 and AVX-512, so do the sample corpus's keypoints, and training diverges from there; so
does the SyncNet every Sync figure is read with), so cells are paired only within one machine,
and one seed may be run once per machine. Cells written before machines were recorded have
none and pair only with each other.

**How a cell runs.** :func:`run_ablation` makes one scratch ``git clone`` of the repository's
HEAD under ``workdir`` (uncommitted edits are not part of the grid; the commit is recorded per
cell) and points its DVC cache at the original's (``cache.dir`` in its ``.dvc/config.local``),
so every output and DVC's run-cache are shared and the original's workspace is never touched.
Each cell starts from a *baseline*: the run of the same seed it differs least from
(:data:`STARTS_FROM`: ``no_par_no_guidance`` from ``no_par``, which retrained UniVDM without PAR;
every other variant from ``full``) when that has finished (else
the original's ``dvc.lock`` and its uncached outputs: metrics, timings, DVCLive curves),
restored with ``dvc checkout --force``; then params.yaml gets the cell's overrides and ``dvc repro``
reruns only what they reach (``no_face_guidance`` reruns ``infer`` and ``evaluate``). Training
stages have persistent outputs, which DVC's run-cache never restores: starting from the seed's
``full`` baseline is what keeps them from retraining. A failed ``dvc repro`` stops the grid
with its log's last lines (the full log stays under ``workdir``).

**Resume.** ``ablation.json`` is rewritten (atomically) after every cell, with the summary and
the verdicts so far. A rerun keeps the cells already in the file and runs only those missing;
a cell whose recorded overrides differ from the grid's (the variant was redefined) runs again.
Cells of other commits are kept (``commits`` lists every commit in the file); move the file
away to start over.

**Aggregation.** Per variant, infer mode (or classifier kind) and metric: mean, sample standard
deviation (``ddof=1``; None for one seed) and the number of seeds with a value. Each paper
direction (:data:`DIRECTIONS`) is judged on the per-seed paired difference
``delta_s = metric(with the component) - metric(without)``, over the seeds where both cells
have a value; see :data:`VERDICT_RULE`. Which way is better: :func:`better_sign`.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from pipeline.config import ConfigError, parse_params
from pipeline.errors import InputError
from pipeline.io.outputs import atomic_directory, atomic_file, write_json

log = logging.getLogger("paha.ablation")

# 1. The grid --------------------------------------------------------------------------------

# The seeds of the method under test (see the module docstring for the ones left fixed).
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
PAPER_NAMES = {"full": "Ours", "no_par": "w/o PAR",
               "no_nonface_guidance": "w/o non-face classifier",
               "no_face_guidance": "w/o face classifier",
               "no_par_no_guidance": "w/o PAR+two classifiers",
               "no_augmentation": "w/o augmentation"}  # fmt: skip
# The paper's Table 3 (PATS + CNAS, 512 px, SG inference): FVD, BAS, FGD, Sync-C, Div.
PAPER_TABLE3_METRICS = ("fvd", "bas", "fgd", "sync_c", "div")
PAPER_TABLE3 = {
    "no_par": (2145.72, 0.1497, 15.452, 5.977, 89.866),
    "no_nonface_guidance": (2087.49, 0.1302, 17.957, 6.583, 97.483),
    "no_face_guidance": (2060.11, 0.1554, 15.181, 5.726, 99.154),
    "no_par_no_guidance": (2126.72, 0.1197, 20.052, 5.227, 83.772),
    "no_augmentation": (2068.74, 0.1548, 15.279, 6.126, 99.604),
    "full": (2052.95, 0.1561, 15.021, 6.183, 100.917),
}

GENERATED_MODES = ("none", "sg", "dg")
CLASSIFIER_KINDS = ("face", "nonface")
EVALUATE_METRICS = "data/metrics/evaluate.json"
CLASSIFIER_METRICS = "data/metrics/train_classifier_{kind}.json"
# Counts in evaluate.json's modes that are bookkeeping, not metrics.
COUNT_KEYS = frozenset({"clips", "clips_with_pose", "gesture_windows"})
# Column order of the tables; other metrics follow in name order.
METRIC_ORDER = ("fvd", "bas", "fgd", "sync_c", "sync_corpus_c", "sync_d", "sync_corpus_d", "div",
                "psnr_face", "psnr_hand", "psnr_body", "ssim_face", "ssim_hand", "ssim_body",
                "hkc", "hkv", "pose_rate")  # fmt: skip


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
    one seed are bit-identical only on the same fingerprint (see the module docstring).
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


# 2. Which way is better -------------------------------------------------------------------


def better_sign(metric: str) -> int | None:
    """+1 when higher is better, -1 when lower is better, None when neither (HKV: read it
    against the ground truth's; pose_rate and unknown keys: not a quality)."""
    if metric in {"fgd", "fvd", "sync_d", "sync_corpus_d"}:
        return -1
    higher = {"bas", "div", "hkc", "sync_c", "sync_corpus_c"}
    if metric in higher or metric.startswith(("psnr_", "ssim_")) or "auc" in metric.split("_"):
        return 1
    return None


def _resolve(metric: str, keys: Iterable[str]) -> str:
    """The key a table metric has in the cells: ``sync_c`` is ``sync_corpus_c`` when the
    evaluation used the corpus SyncNet (no official weights)."""
    keys = set(keys)
    if metric not in keys and metric.startswith("sync_"):
        corpus = metric.replace("sync_", "sync_corpus_", 1)
        if corpus in keys:
            return corpus
    return metric


# 3. Aggregation and verdicts ---------------------------------------------------------------

VERDICT_RULE = (
    "Per replicate s (a seed on one machine) present in both cells, delta_s = metric(with the "
    "component) - metric(without); n = number of such replicates with both values. n = 0: "
    "'not measured'. n < 2, or |mean(delta)| "
    "<= 2 * std(delta) / sqrt(n) (sample std; about two standard errors, not a significance "
    "test): 'within noise'. Otherwise 'reproduced' when the sign of mean(delta) is the better "
    "direction of the metric (higher for PSNR/SSIM/BAS/Sync-C/Div/HKC/AUC, lower for "
    "FGD/FVD/Sync-D), else 'not reproduced'. HKV has no better direction and is not judged."
)


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``); None where undefined (n = 0; std n < 2)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def statistic(values: Iterable[Any]) -> dict:
    """``{"mean", "std", "n"}`` of the numbers among ``values`` (None and NaN left out)."""
    numbers = [x for x in map(_number, values) if x is not None]
    mean, std = mean_std(numbers)
    return {"mean": _rounded(mean), "std": _rounded(std), "n": len(numbers)}


def summarize(cells: Sequence[Mapping]) -> dict:
    """``summary[variant][source][group][metric] = statistic`` over the variant's seeds, where
    source is ``evaluate`` (group = infer mode) or ``classifier`` (group = kind); plus
    ``summary[variant]["seeds"]``."""
    by_variant: dict[str, list[Mapping]] = {}
    for cell in cells:
        by_variant.setdefault(cell["variant"], []).append(cell)
    summary = {}
    for variant, group_cells in by_variant.items():
        entry: dict[str, Any] = {
            "seeds": sorted(c["seed"] for c in group_cells),
            "machines": len({c.get("machine") for c in group_cells}),
        }
        for source in ("evaluate", "classifier"):
            groups: dict[str, set[str]] = {}
            for cell in group_cells:
                for group, metrics in (cell.get(source) or {}).items():
                    groups.setdefault(group, set()).update(metrics)
            entry[source] = {
                group: {m: statistic((c.get(source) or {}).get(group, {}).get(m)
                                     for c in group_cells) for m in _ordered(metrics)}
                for group, metrics in groups.items()
            }  # fmt: skip
        summary[variant] = entry
    return summary


UNRECORDED_MACHINE = "machine not recorded"


def summarize_by_machine(cells: Sequence[Mapping]) -> dict:
    """``{machine: summarize(that machine's cells)}`` (cells without a machine under
    :data:`UNRECORDED_MACHINE`): Sync-C / Sync-D are read by a SyncNet trained on each machine,
    so their spread is only meaningful within one."""
    by_machine: dict[str, list[Mapping]] = {}
    for cell in cells:
        by_machine.setdefault(cell.get("machine") or UNRECORDED_MACHINE, []).append(cell)
    return {machine: summarize(group) for machine, group in sorted(by_machine.items())}


def paired_deltas(cells: Sequence[Mapping], source: str, metric: str, treatment: tuple[str, str],
                  control: tuple[str, str]) -> tuple[list[tuple], list[float]]:  # fmt: skip
    """Replicates (:func:`replicate`: seed, machine) and per-replicate differences
    ``treatment - control`` of one metric, over the replicates where both cells exist and both
    values are numbers. ``treatment`` and ``control`` are ``(variant, group)``."""
    index = {(c["variant"], *replicate(c)): c for c in cells}
    replicates, deltas = [], []
    keys = {(s, m) for v, s, m in index if v == treatment[0]}
    for seed, machine in sorted(keys, key=lambda k: (k[0], k[1] or "")):
        if (control[0], seed, machine) not in index:
            continue
        values = [_number((index[(variant, seed, machine)].get(source) or {}).get(group, {})
                          .get(metric)) for variant, group in (treatment, control)]  # fmt: skip
        if None not in values:
            replicates.append((seed, machine))
            deltas.append(values[0] - values[1])
    return replicates, deltas


def verdict(deltas: Sequence[float], better: int) -> str:
    """The verdict of :data:`VERDICT_RULE` for per-seed differences (with - without) of a metric
    whose better direction is ``better`` (+1 higher, -1 lower)."""
    n = len(deltas)
    if n == 0:
        return "not measured"
    mean, std = mean_std(deltas)
    if n < 2 or abs(mean) <= 2 * std / math.sqrt(n):
        return "within noise"
    return "reproduced" if (mean > 0) == (better > 0) else "not reproduced"


@dataclass(frozen=True)
class Direction:
    """One claim of the paper, judged on paired cells.

    Attributes:
        claim: what is switched, e.g. ``"PAR on vs off"``.
        source: ``"evaluate"`` (groups are infer modes) or ``"classifier"`` (groups are kinds).
        treatment: ``(variant, group)`` with the component.
        control: ``(variant, group)`` without it.
        metrics: the metrics the paper says it improves; None: every metric with a better
            direction that the cells have.
    """

    claim: str
    source: str
    treatment: tuple[str, str]
    control: tuple[str, str]
    metrics: tuple[str, ...] | None


# Table 3 uses SG inference ("Sequential Guidance is used ... during inference", Section 5.5).
_TABLE3 = ("fvd", "bas", "fgd", "sync_c", "div")
DIRECTIONS = (
    # Sec. 5.5: PAR improves FVD and Div.; region PSNR is where it should show (DESIGN.md).
    Direction("PAR on vs off", "evaluate", ("full", "sg"), ("no_par", "sg"),
              ("psnr_face", "psnr_hand", "fvd", "div")),
    Direction("face guidance on vs off", "evaluate", ("full", "sg"), ("no_face_guidance", "sg"),
              ("sync_c", "sync_d")),
    Direction("non-face guidance on vs off", "evaluate", ("full", "sg"),
              ("no_nonface_guidance", "sg"), ("bas", "fgd")),
    Direction("PAR and both guidances on vs off", "evaluate", ("full", "sg"),
              ("no_par_no_guidance", "sg"), _TABLE3),
    # Sec. 4.2: SG for efficiency, DG for quality.
    Direction("DG vs SG", "evaluate", ("full", "dg"), ("full", "sg"), None),
    # Sec. 5.5, "Data Augmentation": better classifiers, and better videos on every metric.
    Direction("augmentation on vs off", "classifier", ("full", "face"),
              ("no_augmentation", "face"), None),
    Direction("augmentation on vs off", "classifier", ("full", "nonface"),
              ("no_augmentation", "nonface"), None),
    Direction("augmentation on vs off", "evaluate", ("full", "sg"), ("no_augmentation", "sg"),
              _TABLE3),
)  # fmt: skip


def _ordered(metrics: Iterable[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    return sorted(set(metrics), key=lambda m: (rank.get(m, len(rank)), m))


def _group_keys(cells: Sequence[Mapping], source: str, variant: str, group: str) -> set[str]:
    return {k for c in cells if c["variant"] == variant
            for k in (c.get(source) or {}).get(group, {})}  # fmt: skip


def judge_directions(cells: Sequence[Mapping],
                     directions: Sequence[Direction] = DIRECTIONS) -> list[dict]:  # fmt: skip
    """One entry per (direction, metric) whose two variants both have cells: the paired
    differences, their mean and sample std, and the verdict (:data:`VERDICT_RULE`)."""
    variants = {c["variant"] for c in cells}
    judged = []
    for d in directions:
        if d.treatment[0] not in variants or d.control[0] not in variants:
            continue
        keys = (_group_keys(cells, d.source, *d.treatment)
                & _group_keys(cells, d.source, *d.control))  # fmt: skip
        wanted = d.metrics if d.metrics is not None else _ordered(keys)
        for name in wanted:
            metric = _resolve(name, keys)
            better = better_sign(metric)
            if better is None:
                continue
            replicates, deltas = paired_deltas(cells, d.source, metric, d.treatment, d.control)
            mean, std = mean_std(deltas)
            group = d.treatment[1] if d.treatment[1] == d.control[1] else ""
            judged.append({
                "direction": f"{d.claim}: {group + ' ' if group else ''}{metric} "
                             f"{'higher' if better > 0 else 'lower'}",
                "claim": d.claim, "source": d.source, "metric": metric,
                "expected": "higher" if better > 0 else "lower",
                "treatment": "/".join(d.treatment), "control": "/".join(d.control),
                "seeds": [seed for seed, _ in replicates],
                "machines": [machine for _, machine in replicates],
                "deltas": [_rounded(x) for x in deltas],
                "delta_mean": _rounded(mean), "delta_std": _rounded(std), "n": len(deltas),
                "verdict": verdict(deltas, better),
            })  # fmt: skip
    return judged


def ablation_document(cells: Sequence[Mapping]) -> dict:
    """What ``ablation.json`` holds: the cells (sorted by variant, then seed), the grid's
    definitions, the summary and the judged directions."""
    rank = {v: i for i, v in enumerate(VARIANTS)}
    cells = sorted(cells, key=lambda c: (rank.get(c["variant"], len(rank)), c["variant"],
                                         c["seed"], c.get("machine") or ""))  # fmt: skip
    return {
        "seed_keys": list(SEED_KEYS),
        "variants": {v: VARIANTS[v] for v in dict.fromkeys(c["variant"] for c in cells)
                     if v in VARIANTS},
        "commits": sorted({c["commit"] for c in cells if c.get("commit")}),
        "machines": sorted({c["machine"] for c in cells if c.get("machine")}),
        "cells": list(cells),
        "summary": summarize(cells),
        "summary_by_machine": summarize_by_machine(cells),
        "directions": judge_directions(cells),
        "verdict_rule": VERDICT_RULE,
    }  # fmt: skip


# 4. The HTML and Markdown tables -----------------------------------------------------------

TEMPLATE = "ablation.html.j2"
_ARROWS = {1: " \u2191", -1: " \u2193", None: ""}


def format_statistic(stat: Mapping | None) -> str:
    """``"13.70 ± 0.021 (3)"``: mean ± sample std (seeds); ``"—"`` without a value."""
    if not stat or stat.get("mean") is None:
        return "\u2014"
    text = f"{stat['mean']:.4g}"
    if stat.get("std") is not None:
        text += f" \u00b1 {stat['std']:.2g}"
    return f"{text} ({stat['n']})"


def _delta_text(entry: Mapping) -> str:
    if entry["delta_mean"] is None:
        return "\u2014"
    std = "" if entry["delta_std"] is None else f" \u00b1 {entry['delta_std']:.2g}"
    return f"{entry['delta_mean']:+.4g}{std} ({entry['n']})"


def summary_tables(summary: Mapping) -> list[dict]:
    """The tables of a summary (:func:`summarize`: the document's pooled one, or one machine's):
    one per infer mode (SG first: Table 3's inference) and one of the classifiers' AUCs; rows
    are variants, cells mean ± std (seeds)."""
    variants = list(summary)
    tables = []
    for mode in ("sg", "dg", "none"):
        metrics = _ordered(k for v in variants
                           for k in summary[v]["evaluate"].get(mode, {}))  # fmt: skip
        if not metrics:
            continue
        header = ["variant", *(m + _ARROWS[better_sign(m)] for m in metrics)]
        rows = [[v, *(format_statistic(summary[v]["evaluate"].get(mode, {}).get(m))
                      for m in metrics)] for v in variants]  # fmt: skip
        tables.append({"title": f"infer mode {mode}", "header": header, "rows": rows})
    columns = sorted(
        {
            (kind, m)
            for v in variants
            for kind, metrics in summary[v]["classifier"].items()
            for m in metrics
        }
    )
    if columns:
        header = ["variant", *(f"{kind} {m}{_ARROWS[better_sign(m)]}" for kind, m in columns)]
        rows = [[v, *(format_statistic(summary[v]["classifier"].get(kind, {}).get(m))
                      for kind, m in columns)] for v in variants]  # fmt: skip
        tables.append({"title": "PCE classifiers (held-out pairs)", "header": header,
                       "rows": rows})  # fmt: skip
    return tables


def paper_table() -> dict:
    """The paper's Table 3 with our variant names."""
    header = ["variant", "paper row", *(m + _ARROWS[better_sign(m)] for m in PAPER_TABLE3_METRICS)]
    rows = [[v, PAPER_NAMES[v], *(f"{x:g}" for x in values)] for v, values in PAPER_TABLE3.items()]
    return {"title": "The paper's Table 3 (PATS + CNAS, 512 px, SG)", "header": header,
            "rows": rows}  # fmt: skip


def render_html(document: Mapping) -> str:
    """The self-contained HTML report (``ablation.html.j2``; every value escaped)."""
    source = resources.files("pipeline.orchestration").joinpath(TEMPLATE).read_text(
        encoding="utf-8")  # fmt: skip
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             keep_trailing_newline=True)  # fmt: skip
    directions = [{"direction": d["direction"], "pair": f"{d['treatment']} vs {d['control']}",
                   "delta": _delta_text(d), "verdict": d["verdict"]}
                  for d in document["directions"]]  # fmt: skip
    by_machine = document["summary_by_machine"]
    return env.from_string(source).render(
        document=document, tables=summary_tables(document["summary"]), paper=paper_table(),
        machine_tables=[(machine, summary_tables(summary)[0])
                        for machine, summary in by_machine.items() if len(by_machine) > 1],
        unrecorded_machines=sum(not c.get("machine") for c in document["cells"]),
        directions=directions,
    )  # fmt: skip


def markdown_tables(document: Mapping) -> str:
    """The SG table and the verdicts as Markdown (for the README)."""
    out = io.StringIO()
    for table in summary_tables(document["summary"])[:1]:
        out.write(f"| {' | '.join(table['header'])} |\n")
        out.write(f"|{'---|' * len(table['header'])}\n")
        for row in table["rows"]:
            out.write(f"| {' | '.join(row)} |\n")
    out.write("\n| direction | with - without, mean ± std (seeds) | verdict |\n|---|---|---|\n")
    for d in document["directions"]:
        out.write(f"| {d['direction']} | {_delta_text(d)} | {d['verdict']} |\n")
    return out.getvalue()


def write_outputs(cells: Sequence[Mapping], out: Path, html: Path | None) -> dict:
    """Write ``ablation.json`` (and the HTML table) for ``cells``, atomically; return the
    document."""
    document = ablation_document(cells)
    write_json(document, out)
    if html is not None:
        with atomic_file(html) as tmp:
            tmp.write_text(render_html(document), encoding="utf-8")
    return document


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


def run_grid(cells: Sequence[Mapping], todo: Sequence[tuple[str, int]],
             run_cell: Callable[[str, int], dict], out: Path,
             html: Path | None = None) -> dict:  # fmt: skip
    """Run the ``todo`` cells with ``run_cell(variant, seed) -> cell`` and rewrite the outputs
    after each one, so an interrupted grid keeps what it finished; return the final document.
    A new cell replaces only the cell of the same variant and replicate."""
    cells = [dict(c) for c in cells]
    for i, (variant, seed) in enumerate(todo, 1):
        started = time.perf_counter()
        print(f"[ablate] {i}/{len(todo)}: {variant} seed {seed}", file=sys.stderr, flush=True)
        cell = run_cell(variant, seed)
        key = (cell["variant"], *replicate(cell))
        cells = [c for c in cells if (c["variant"], *replicate(c)) != key] + [cell]
        write_outputs(cells, out, html)
        print(f"[ablate] {variant} seed {seed} done in {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return write_outputs(cells, out, html)


# 5. Running a cell in the scratch clone ----------------------------------------------------


class AblationRunFailed(RuntimeError):
    """``dvc repro`` (or the clone's set-up) failed for a cell; the log's tail is in the message."""


def _bin() -> Path:
    return Path(sys.executable).parent


def _env() -> dict[str, str]:
    # The stage commands say `python`: the interpreter running paha must come first on PATH.
    # GIT_OPTIONAL_LOCKS=0: `git status` in the original does not even refresh its index.
    return os.environ | {"PATH": f"{_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
                         "DVC_NO_ANALYTICS": "1", "GIT_OPTIONAL_LOCKS": "0"}  # fmt: skip


def _dvc() -> str:
    dvc = _bin() / "dvc"
    return str(dvc) if dvc.exists() else "dvc"


def _run(argv: Sequence[str], cwd: Path) -> str:
    """Run a short command (git, dvc config); its stdout, or AblationRunFailed with its output."""
    proc = subprocess.run(list(argv), cwd=cwd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AblationRunFailed(f"{' '.join(argv)} (in {cwd}) failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _run_logged(argv: Sequence[str], cwd: Path, log_path: Path) -> int:
    """Run a long command with stdout and stderr appended to ``log_path``; its exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.run(list(argv), cwd=cwd, env=_env(), stdout=handle,
                              stderr=subprocess.STDOUT)  # fmt: skip
    return proc.returncode


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def uncached_outputs(root: Path) -> list[str]:
    """Outputs of ``root/dvc.yaml`` with ``cache: false`` (metrics, timings, DVCLive curves):
    ``dvc checkout`` does not restore them, so a baseline keeps copies."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return sorted({str(o.def_path) for s in repo.index.stages for o in s.outs
                       if not o.use_cache})  # fmt: skip


def share_cache(repo: Path, clone: Path) -> None:
    """Point ``clone``'s DVC cache (its ``.dvc/config.local``) at ``repo``'s cache directory:
    outputs and run-cache entries are shared both ways."""
    from dvc.repo import Repo

    with Repo(str(repo)) as original:
        cache = original.cache.local_cache_dir
    with Repo(str(clone)) as scratch, scratch.config.edit("local") as config:
        config["cache"]["dir"] = cache


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    elif src.is_file():
        shutil.copy2(src, dst)


def save_baseline(root: Path, dest: Path, paths: Sequence[str]) -> None:
    """Keep ``root``'s ``dvc.lock`` and the uncached outputs ``paths`` under ``dest``."""
    with atomic_directory(dest) as tmp:
        _copy(root / "dvc.lock", tmp / "dvc.lock")
        for path in paths:
            _copy(root / path, tmp / "files" / path)


def restore_baseline(baseline: Path, clone: Path, paths: Sequence[str], log_path: Path) -> None:
    """Put the clone's workspace back to ``baseline``: its lock file and uncached outputs, then
    ``dvc checkout --force`` for the cached ones. Outputs missing from the cache are logged;
    ``dvc repro`` then reruns their stages. (Checkout does not write the ``.gitignore`` files
    DVC keeps beside outputs; no dependency in dvc.yaml is a folder that holds outputs, so none
    sees them.)"""
    for path in paths:
        _remove(clone / path)
        _copy(baseline / "files" / path, clone / path)
    _remove(clone / "dvc.lock")
    _copy(baseline / "dvc.lock", clone / "dvc.lock")
    if (clone / "dvc.lock").exists() and _run_logged(
        [_dvc(), "checkout", "--force"], clone, log_path
    ):
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write("note: dvc checkout could not restore every output; dvc repro reruns "
                         "the stages of the missing ones\n")  # fmt: skip


def _load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML().load(text)  # round trip: DVC's own YAML reading, comments kept


def _dump_yaml(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def _plain(data: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (for pydantic)."""
    return json.loads(json.dumps(data))


@dataclass(frozen=True)
class ScratchClone:
    """The clone the grid runs in.

    Attributes:
        repo: the original repository (only its cache is written, through DVC).
        root: the clone (HEAD of ``repo``, detached).
        state: baselines and logs of this commit's cells.
        commit: the commit the clone is at.
        uncached: the uncached outputs of ``dvc.yaml`` (see :func:`uncached_outputs`).
        machine: :func:`machine_fingerprint` of the machine the cells run on.
    """

    repo: Path
    root: Path
    state: Path
    commit: str
    uncached: tuple[str, ...]
    machine: str | None = None

    def base_params(self) -> Any:
        """params.yaml as committed (ruamel round-trip data)."""
        return _load_yaml(_run(["git", "show", f"{self.commit}:params.yaml"], self.root))

    def params_for(self, overrides: Mapping[str, Any]) -> Any:
        """The committed params with ``overrides`` set, validated (ConfigError names a bad
        override before anything runs)."""
        params = self.base_params()
        for key, value in overrides.items():
            set_dotted(params, key, value)
        parse_params(_plain(params), f"params.yaml with overrides {dict(overrides)}")
        return params


def prepare_clone(repo: Path, workdir: Path, machine: str | None = None) -> ScratchClone:
    """The scratch clone of ``repo``'s HEAD under ``workdir`` (reused when it exists), with its
    DVC cache pointing at ``repo``'s, and the starting baseline (``repo``'s lock file and
    uncached outputs)."""
    repo, workdir = repo.resolve(), workdir.resolve()
    if not repo.is_dir():
        raise InputError(f"{repo}: no such repository")
    try:
        commit = _run(["git", "rev-parse", "--verify", "HEAD"], repo).strip()
    except AblationRunFailed:
        raise InputError(f"{repo}: not a git repository with a commit (the ablation runs a "
                         "clone of HEAD)") from None  # fmt: skip
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], repo).strip():
        log.warning("%s has uncommitted changes: the grid runs HEAD (%s) without them", repo,
                    commit[:12])  # fmt: skip
    root, state = workdir / f"clone-{commit[:12]}", workdir / f"state-{commit[:12]}"
    if not (root / ".git").is_dir():
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f".clone-{commit[:12]}.tmp-{os.getpid()}"
        _remove(tmp)
        _run(["git", "clone", "--quiet", str(repo), str(tmp)], workdir)
        _run(["git", "checkout", "--quiet", "--detach", commit], tmp)
        share_cache(repo, tmp)
        os.replace(tmp, root)
    uncached = tuple(uncached_outputs(root))
    save_baseline(repo, state / "start", uncached)  # the original's latest state, each run
    return ScratchClone(repo, root, state, commit, uncached, machine)


def read_cell_metrics(root: Path) -> dict:
    """The metrics a cell records from a finished run under ``root``: ``evaluate`` (per infer
    mode: every metric of evaluate.json, counts left out) and ``classifier`` (per kind: the
    held-out AUCs, per noise bucket, shifted audio and other clip's audio)."""

    def read(relative: str) -> dict:
        path = root / relative
        if not path.is_file():
            raise AblationRunFailed(f"{path}: missing after dvc repro")
        return json.loads(path.read_text(encoding="utf-8"))

    def values(figures: Mapping, keep: Callable[[str], bool]) -> dict:
        # Numbers and nulls (a null metric stays, with its reason in the run's own file).
        return {k: _rounded(_number(v)) for k, v in figures.items()
                if keep(k) and (v is None or _number(v) is not None)}  # fmt: skip

    evaluation = read(EVALUATE_METRICS)["modes"]
    return {
        "evaluate": {mode: values(evaluation[mode], lambda k: k not in COUNT_KEYS)
                     for mode in GENERATED_MODES if mode in evaluation},
        "classifier": {kind: values(read(CLASSIFIER_METRICS.format(kind=kind)),
                                    lambda k: "auc" in k.split("_"))
                       for kind in CLASSIFIER_KINDS},
    }  # fmt: skip


def run_cell(clone: ScratchClone, variant: str, seed: int) -> dict:
    """Run one (variant, seed) in the clone: restore the seed's baseline, write the overrides
    into params.yaml, ``dvc repro``, read the metrics (and keep ``full``'s state as the seed's
    baseline; likewise every variant another starts from)."""
    overrides = cell_overrides(variant, seed)
    log_path = clone.state / "logs" / f"{variant}-seed{seed}.log"
    _remove(log_path)
    candidates = [clone.state / f"baseline-{parent}-seed{seed}"
                  for parent in (starts_from(variant), "full") if parent]  # fmt: skip
    start = next((c for c in candidates if c.exists()), clone.state / "start")
    restore_baseline(start, clone.root, clone.uncached, log_path)
    (clone.root / "params.yaml").write_text(_dump_yaml(clone.params_for(overrides)),
                                            encoding="utf-8")  # fmt: skip
    if _run_logged([_dvc(), "repro"], clone.root, log_path):
        raise AblationRunFailed(f"{variant} seed {seed}: dvc repro failed in {clone.root} "
                                f"(log {log_path}):\n{_tail(log_path)}")  # fmt: skip
    cell = {"variant": variant, "seed": int(seed), "overrides": overrides, "commit": clone.commit,
            "machine": clone.machine} | read_cell_metrics(clone.root)  # fmt: skip
    if variant == "full" or variant in STARTS_FROM.values():
        save_baseline(clone.root, clone.state / f"baseline-{variant}-seed{seed}", clone.uncached)
    return cell


def run_ablation(repo: str | os.PathLike, variants: Sequence[str], seeds: Sequence[int],
                 workdir: str | os.PathLike, out: str | os.PathLike,
                 html: str | os.PathLike | None = None) -> dict:  # fmt: skip
    """Run the missing cells of ``variants`` x ``seeds`` (see the module docstring) and write
    ``out`` (ablation.json) and ``html`` after each; return the final document."""
    repo, workdir, out = Path(repo), Path(workdir), Path(out)
    html = None if html is None else Path(html)
    for variant in variants:
        cell_overrides(variant, 0)  # unknown names fail here
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)}")
    cells = load_cells(out)
    machine = machine_fingerprint()
    todo = pending_cells(cells, variants, seeds, machine)
    if not todo:
        return write_outputs(cells, out, html)
    clone = prepare_clone(repo, workdir, machine)
    for variant, seed in todo:  # every override is checked before hours of compute
        clone.params_for(cell_overrides(variant, seed))
    return run_grid(cells, todo, lambda v, s: run_cell(clone, v, s), out, html)

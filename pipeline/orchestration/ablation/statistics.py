"""The ablation's statistics: per-variant mean and spread over seeds, paired differences and the
verdict on each of the paper's directions (:data:`DIRECTIONS`, :data:`VERDICT_RULE`), gathered
into the ``ablation.json`` document (:func:`ablation_document`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.orchestration.ablation.grid import SEED_KEYS, VARIANTS, replicate

# Column order of the tables; other metrics follow in name order.
METRIC_ORDER = ("fvd", "bas", "fgd", "sync_c", "sync_corpus_c", "sync_d", "sync_corpus_d", "div",
                "psnr_face", "psnr_hand", "psnr_body", "ssim_face", "ssim_hand", "ssim_body",
                "hkc", "hkv", "pose_rate")  # fmt: skip


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


VERDICT_RULE = (
    "Per replicate s (a seed on one machine) present in both cells, delta_s = metric(with the "
    "component) - metric(without); n = number of such replicates with both values. n = 0: "
    "'not measured'. n < 2, or |mean(delta)| "
    "<= 2 * std(delta) / sqrt(n) (sample std; about two standard errors, not a significance "
    "test): 'within noise'. Otherwise 'reproduced' when the sign of mean(delta) is the better "
    "direction of the metric (higher for PSNR/SSIM/BAS/Sync-C/Div/HKC/AUC, lower for "
    "FGD/FVD/Sync-D), else 'not reproduced'. HKV has no better direction and is not judged."
)


def as_number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def rounded(value: float | None) -> float | None:
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
    numbers = [x for x in map(as_number, values) if x is not None]
    mean, std = mean_std(numbers)
    return {"mean": rounded(mean), "std": rounded(std), "n": len(numbers)}


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
                                     for c in group_cells) for m in ordered_metrics(metrics)}
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
        values = [as_number((index[(variant, seed, machine)].get(source) or {}).get(group, {})
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


def ordered_metrics(metrics: Iterable[str]) -> list[str]:
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
        wanted = d.metrics if d.metrics is not None else ordered_metrics(keys)
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
                "deltas": [rounded(x) for x in deltas],
                "delta_mean": rounded(mean), "delta_std": rounded(std), "n": len(deltas),
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

"""The ablation's tables: the HTML report (``report.html.j2``, every value escaped) beside the
paper's Table 3, the Markdown tables ``paha ablate`` prints, and :func:`write_outputs`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import jinja2

from pipeline.io.outputs import atomic_file, write_json
from pipeline.orchestration.ablation.statistics import (
    ablation_document,
    better_sign,
    ordered_metrics,
)

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


TEMPLATE = "report.html.j2"


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
        metrics = ordered_metrics(k for v in variants
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
    source = resources.files("pipeline.orchestration.ablation").joinpath(TEMPLATE).read_text(
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

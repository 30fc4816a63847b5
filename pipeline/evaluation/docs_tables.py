"""The results tables of the README and ``docs/results.md``, generated from ``data/metrics/``.

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in a Markdown
file; ``python -m pipeline.cli.docs_tables --write`` rewrites every such block from the
committed metrics, ``--check`` exits 1 naming each block that disagrees with them (a test runs
it), so a number in the docs cannot go stale by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

DOCS = ("README.md", "docs/results.md")
MODES = (("ground_truth", "ground truth"), ("none", "none"), ("sg", "SG"), ("dg", "DG"))


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def evaluate_table(metrics: Mapping) -> str:
    """One row per mode of ``evaluate.json``: region PSNR, lip sync and its control, Sync-C/D
    (official or corpus SyncNet, as the file says), FGD / Div. / BAS (Bailando's), HKC."""
    sync = metrics["sync_model"]["metric"]
    sync_label = "Sync-C / Sync-D" + (" (corpus SyncNet)" if sync == "sync_corpus" else "")
    rows = [f"| mode | PSNR face / hand / body (dB) | lip_sync_r / other clip's speech | "
            f"{sync_label} | FGD / Div. / BAS | HKC |", "|---|---|---|---|---|---|"]  # fmt: skip
    for key, label in MODES:
        m = metrics["modes"][key]
        regions = [_number(m[f"psnr_{r}"], 2) for r in ("face", "hand", "body")]
        psnr = "–" if key == "ground_truth" else " / ".join(regions)
        lips = f"{_number(m['lip_sync_r'], 3)} / {_number(m['lip_sync_r_swapped'], 3)}"
        sync_cd = f"{_number(m[f'{sync}_c'], 3)} / {_number(m[f'{sync}_d'], 3)}"
        fgd = "ref." if key == "ground_truth" else _number(m["fgd"], 1)
        gesture = f"{fgd} / {_number(m['div'], 1)} / {_number(m['bas_bailando'], 3)}"
        rows.append(f"| {label} | {psnr} | {lips} | {sync_cd} | {gesture} | "
                    f"{_number(m['hkc'], 3)} |")  # fmt: skip
    clips = metrics["modes"]["none"]["clips"]
    rows.append("")
    rows.append(
        f"*{clips} test clips at {metrics['eval_size']} px, from `data/metrics/evaluate.json`.*"
    )
    return "\n".join(rows)


TABLES: dict[str, tuple[str, Callable[[Mapping], str]]] = {
    "evaluate": ("data/metrics/evaluate.json", evaluate_table),
}
_BLOCK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table:\2 -->)", re.DOTALL)


def render(text: str, root: Path) -> str:
    """``text`` with every table block regenerated from the metrics under ``root``."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}")
        source, build = TABLES[name]
        table = build(json.loads((root / source).read_text()))
        return f"{match.group(1)}{table}\n{match.group(4)}"

    return _BLOCK.sub(fill, text)


def stale_blocks(root: str | Path = ".") -> list[str]:
    """``file: table NAME`` for each block of :data:`DOCS` that differs from the metrics."""
    root = Path(root)
    stale = []
    for doc in DOCS:
        text = (root / doc).read_text(encoding="utf-8")
        for old, new in zip(_BLOCK.finditer(text), _BLOCK.finditer(render(text, root)),
                            strict=True):  # fmt: skip
            if old.group(0) != new.group(0):
                stale.append(f"{doc}: table {old.group(2)}")
    return stale


__all__ = ["DOCS", "TABLES", "evaluate_table", "render", "stale_blocks"]

"""The reviewer's overrides (``data/overrides.csv``): keep or reject a clip against the filters.

Columns ``clip_id, decision, note``; ``curate`` applies them after its own decisions, so a
reviewer's choice survives every rerun.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import InputError


class OverridesError(InputError):
    """The reviewer's overrides CSV is malformed (the message names the file and line)."""


# ---------------------------------------------------------------------------------------------
# Reviewer overrides
# ---------------------------------------------------------------------------------------------
OVERRIDE_COLUMNS = ("clip_id", "decision", "note")
OVERRIDE_DECISIONS = ("keep", "reject")


@dataclass(frozen=True)
class Override:
    """One line of the overrides CSV."""

    clip_id: str
    decision: str  # "keep" or "reject"
    note: str
    line: int


def read_overrides(path: str | os.PathLike) -> dict[str, Override]:
    """Read the reviewer's overrides CSV (columns ``clip_id, decision, note``).

    A missing file means no overrides. ``note`` may be left out; ``decision`` is ``keep`` or
    ``reject`` (case and surrounding spaces ignored). Raises :class:`OverridesError` naming the
    file and line for an unknown or missing column, a bad decision, an empty clip_id, a line with
    more fields than the header, or a clip listed twice.
    """
    path = Path(path)
    if not path.exists():
        return {}
    overrides: dict[str, Override] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets add a BOM
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        if not header:
            return {}
        unknown = [name for name in header if name not in OVERRIDE_COLUMNS]
        if unknown:
            raise OverridesError(
                f"{path}: line 1: unknown column(s) {unknown}; expected {list(OVERRIDE_COLUMNS)}"
            )
        missing = [name for name in ("clip_id", "decision") if name not in header]
        if missing:
            raise OverridesError(f"{path}: line 1: missing column(s) {missing}")
        reader.fieldnames = header
        for record in reader:
            line = reader.line_num
            if None in record:
                raise OverridesError(f"{path}: line {line}: more fields than the header")
            clip_id = (record.get("clip_id") or "").strip()
            decision = (record.get("decision") or "").strip().lower()
            note = (record.get("note") or "").strip()
            if not clip_id:
                raise OverridesError(f"{path}: line {line}: empty clip_id")
            if decision not in OVERRIDE_DECISIONS:
                raise OverridesError(
                    f"{path}: line {line}: decision {record.get('decision')!r} for {clip_id!r} "
                    f"is not one of {list(OVERRIDE_DECISIONS)}"
                )
            if clip_id in overrides:
                raise OverridesError(
                    f"{path}: line {line}: {clip_id!r} is already overridden on line "
                    f"{overrides[clip_id].line}"
                )
            overrides[clip_id] = Override(clip_id, decision, note, line)
    return overrides


def apply_overrides(
    table: pd.DataFrame, overrides: Mapping[str, Override], source: str, measured: set[str]
) -> list[str]:
    """Apply overrides to ``table`` in place (``kept``, ``reasons``, ``override``, ``note``).

    ``keep`` sets ``kept`` True and leaves the reasons as measured (the ``override`` column says
    why a clip with reasons is kept); it is refused, with a warning, for a clip that could not be
    measured (not cut, or unreadable), since training could not read it either. ``reject`` sets
    ``kept`` False and adds ``"rejected by reviewer: <note>"``.

    Returns warnings: overrides naming a clip that is not in the table, and refused keeps.
    """
    warnings: list[str] = []
    position = {clip_id: i for i, clip_id in enumerate(table["clip_id"])}
    for clip_id, item in overrides.items():
        where = f"{source}: line {item.line}"
        if clip_id not in position:
            warnings.append(f"{where}: clip {clip_id!r} is not in the clip table; ignored")
            continue
        i = table.index[position[clip_id]]
        reasons = list(table.at[i, "reasons"])
        if item.decision == "keep":
            if clip_id not in measured:
                warnings.append(f"{where}: cannot keep {clip_id!r}, it was not measured "
                                f"({'; '.join(reasons) or 'no reasons'}); ignored")  # fmt: skip
                table.at[i, "note"] = f"keep override ignored (clip not measurable); {item.note}"
                continue
            table.at[i, "kept"] = True
        else:
            table.at[i, "kept"] = False
            reasons.append(f"rejected by reviewer: {item.note}" if item.note
                           else "rejected by reviewer")  # fmt: skip
            table.at[i, "reasons"] = reasons
        table.at[i, "override"] = item.decision
        table.at[i, "note"] = item.note
    return warnings

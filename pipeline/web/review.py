"""``paha review``: a page over ``data/curated/`` to keep or reject clips into the overrides CSV.

A small FastAPI app rendered on the server (Jinja2, plain HTML forms, no script), so it needs
nothing beyond the project's own dependencies and works in any browser:

- ``GET /``: every clip of ``clips.parquet`` with its contact sheet, measurements (failing ones
  in red, thresholds from the ``curate`` params), reasons, split, the override ``curate`` last
  applied and the decision now in the overrides file. Query ``status`` (``all``, ``kept``,
  ``rejected``, ``decided``: in the overrides file), ``reason`` (a reason category of
  :func:`pipeline.curation.decisions.reason_category`), ``speaker`` and ``page`` filter it.
- ``POST /decide`` (form ``clip_id``, ``decision`` = ``keep`` / ``reject`` / ``clear``,
  ``note``, ``back`` = the page's query): :func:`pipeline.web.overrides_file.record_decision`
  (locked, temp file + rename), then a redirect back to the same filtered page.
- ``GET /sheets/{name}``: a contact sheet PNG of ``curated/sheets/``.
- ``GET /overrides.csv``: the overrides file as it is now.

The table is read again when ``clips.parquet`` changes (after ``dvc repro``); the overrides file
on every page, so a decision another reviewer made is shown. Decisions apply when ``curate``
reruns: ``dvc repro`` (``data/overrides.csv`` is a dependency of the stage).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from fastapi import FastAPI, Request  # module level: the routes' annotations name them
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse

from pipeline.config import CurateParams
from pipeline.curation.decisions import reason_category
from pipeline.curation.overrides import Override, OverridesError, read_overrides
from pipeline.curation.report import CATEGORY_LABELS, COLUMNS, sheet_name
from pipeline.curation.report import _clip_context as report_clip_context
from pipeline.errors import MissingInputError
from pipeline.io import tables
from pipeline.web.overrides_file import record_decision

TEMPLATE = "review.html.j2"
PAGE_SIZE = 50
STATUSES = ("all", "kept", "rejected", "decided")


@dataclass(frozen=True)
class Filters:
    """What the page shows: ``status`` of :data:`STATUSES`, a reason category, a speaker (empty:
    any) and the 1-based page."""

    status: str = "all"
    reason: str = ""
    speaker: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        status = query.get("status", "all")
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        return cls(status if status in STATUSES else "all", query.get("reason", ""),
                   query.get("speaker", ""), page)  # fmt: skip

    def query(self, **changes: Any) -> str:
        """This filter as a URL query (``changes`` replace fields), defaults left out."""
        values = {"status": self.status, "reason": self.reason, "speaker": self.speaker,
                  "page": self.page} | changes  # fmt: skip
        kept = {k: v for k, v in values.items() if v not in ("", "all", 1)}
        return urllib.parse.urlencode(kept)


class CuratedClips:
    """The curated table of ``curated_dir`` (re-read when ``clips.parquet`` changes).

    Raises :class:`MissingInputError` when ``clips.parquet`` does not exist.
    """

    def __init__(self, curated_dir: str | os.PathLike):
        self.folder = Path(curated_dir)
        self.path = self.folder / "clips.parquet"
        if not self.path.is_file():
            raise MissingInputError(f"{self.path}: curated clip table not found (run "
                                    "`dvc repro curate`, or give --curated)")  # fmt: skip
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._table = pd.DataFrame()

    def table(self) -> pd.DataFrame:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._table = tables.read_table(self.path, tables.CURATED)
                self._stamp = stamp
            return self._table

    def sheet(self, name: str) -> Path | None:
        """The contact sheet file ``sheets/NAME`` when it exists (no path outside the folder)."""
        if name != Path(name).name or not name.endswith(".png"):
            return None
        path = self.folder / "sheets" / name
        return path if path.is_file() else None


def _categories(reasons) -> list[str]:
    return sorted({reason_category(str(r)) for r in reasons})


def clip_cards(table: pd.DataFrame, overrides: dict[str, Override], params: CurateParams,
               filters: Filters) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """The clips matching ``filters`` on its page, as template contexts, and how many match.

    Each card is the curation report's context of the clip (status, reasons, cells with the
    failing ones marked, the override ``curate`` applied) plus ``decision`` / ``decision_note``
    (the overrides file now), ``pending`` (the file's decision differs from what ``curate``
    applied: it takes effect at the next ``dvc repro``) and ``anchor``.
    """
    cards = []
    for _, row in table.iterrows():
        clip_id = str(row["clip_id"])
        decided = overrides.get(clip_id)
        if filters.status == "kept" and not bool(row["kept"]):
            continue
        if filters.status == "rejected" and bool(row["kept"]):
            continue
        if filters.status == "decided" and decided is None:
            continue
        if filters.reason and filters.reason not in _categories(row["reasons"]):
            continue
        if filters.speaker and str(row["speaker"]) != filters.speaker:
            continue
        name = sheet_name(clip_id)
        card = report_clip_context(row, params, f"sheets/{name}")
        applied = (str(row["override"]), str(row["note"]))
        now = (decided.decision, decided.note) if decided else ("", "")
        card.update(anchor=f"clip-{name.removesuffix('.png')}",
                    decision=now[0], decision_note=now[1], pending=now != applied)  # fmt: skip
        cards.append(card)
    start = (filters.page - 1) * PAGE_SIZE
    return cards[start : start + PAGE_SIZE], len(cards)


def render_page(clips: CuratedClips, overrides_path: Path, params: CurateParams,
                filters: Filters, message: str = "", error: str = "") -> str:  # fmt: skip
    """The review page as HTML."""
    table = clips.table()
    try:
        overrides = read_overrides(overrides_path)
    except OverridesError as problem:  # shown on the page; the file is left for a person to fix
        overrides, error = {}, error or str(problem)
    cards, matching = clip_cards(table, overrides, params, filters)
    kept = table["kept"].astype(bool)
    category_counts: dict[str, int] = {}
    for reasons in table["reasons"]:
        for category in _categories(reasons):
            category_counts[category] = category_counts.get(category, 0) + 1
    pages = max(1, -(-matching // PAGE_SIZE))
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("pipeline.web").joinpath(TEMPLATE).read_text(encoding="utf-8")
    )
    return template.render(
        clips=cards, matching=matching, filters=filters, pages=pages,
        counts={"total": len(table), "kept": int(kept.sum()), "rejected": int((~kept).sum()),
                "decided": len(overrides)},
        statuses=STATUSES,
        categories=[{"key": c, "label": CATEGORY_LABELS.get(c, c), "count": n}
                    for c, n in sorted(category_counts.items())],
        speakers=sorted(str(s) for s in table["speaker"].unique()),
        columns=[{"header": h, "limit": limit(params)} for _, h, _, limit in COLUMNS],
        overrides_path=str(overrides_path), curated=str(clips.folder),
        back=filters.query(), message=message, error=error,
    )  # fmt: skip


def review_app(curated_dir: str | os.PathLike, overrides_path: str | os.PathLike,
               params: CurateParams):  # fmt: skip
    """The FastAPI app of the review page over ``curated_dir`` writing ``overrides_path``."""
    clips = CuratedClips(curated_dir)
    overrides_path = Path(overrides_path)
    app = FastAPI(title="paha review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> str:
        query = dict(request.query_params)
        return render_page(clips, overrides_path, params, Filters.from_query(query),
                           message=query.get("done", ""), error=query.get("error", ""))  # fmt: skip

    @app.post("/decide")
    async def decide(request: Request) -> RedirectResponse:
        # A urlencoded form parsed by hand: FastAPI's Form() would need python-multipart.
        form = {k: v[-1] for k, v in
                urllib.parse.parse_qs((await request.body()).decode("utf-8"),
                                      keep_blank_values=True).items()}  # fmt: skip
        clip_id, decision = form.get("clip_id", ""), form.get("decision", "")
        back = urllib.parse.parse_qs(form.get("back", ""))
        back = {k: v[-1] for k, v in back.items() if k in ("status", "reason", "speaker", "page")}
        known = set(clips.table()["clip_id"].astype(str))
        try:
            if clip_id not in known:
                raise OverridesError(f"{clip_id!r} is not a clip of {clips.path}")
            record_decision(overrides_path, clip_id, None if decision == "clear" else decision,
                            form.get("note", ""))  # fmt: skip
            back["done"] = (f"{clip_id}: {decision}" if decision != "clear"
                            else f"{clip_id}: decision cleared")  # fmt: skip
        except OverridesError as problem:
            back["error"] = str(problem)
        anchor = f"#clip-{sheet_name(clip_id).removesuffix('.png')}" if clip_id in known else ""
        return RedirectResponse(f"/?{urllib.parse.urlencode(back)}{anchor}", status_code=303)

    @app.get("/sheets/{name}")
    def sheet(name: str):
        path = clips.sheet(name)
        if path is None:
            return PlainTextResponse(f"no contact sheet {name}", status_code=404)
        return FileResponse(path, media_type="image/png")

    @app.get("/overrides.csv", response_class=PlainTextResponse)
    def overrides_file() -> str:
        return overrides_path.read_text(encoding="utf-8") if overrides_path.exists() else ""

    return app


def serve(app, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (uvicorn, one process: the CSV lock covers threads and
    other processes alike)."""
    import uvicorn

    print(f"paha review: http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

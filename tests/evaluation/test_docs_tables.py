"""The docs' results tables come from the committed metrics (pipeline/evaluation/docs_tables)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.cli.docs_tables import main as docs_tables
from pipeline.evaluation.docs_tables import DOCS, evaluate_table, stale_blocks

ROOT = Path(__file__).resolve().parents[2]


def test_committed_docs_agree_with_the_committed_metrics():
    assert stale_blocks(ROOT) == [], "run `python -m pipeline.cli.docs_tables --write`"


def _mode(**values) -> dict:
    keys = ["psnr_face", "psnr_hand", "psnr_body", "lip_sync_r", "lip_sync_r_swapped",
            "sync_c", "sync_d", "fgd", "div", "bas_bailando", "hkc"]  # fmt: skip
    return {k: None for k in keys} | {"clips": 2} | values


def test_rows_show_each_mode_s_own_values_rounded():
    metrics = {"sync_model": {"metric": "sync"}, "eval_size": 256, "modes": {
        "ground_truth": _mode(lip_sync_r=0.70449, lip_sync_r_swapped=0.1, sync_c=7.2, sync_d=6.1,
                              div=71.33, bas_bailando=0.2389, hkc=0.7067),
        "none": _mode(psnr_face=20.514, psnr_hand=14.2, psnr_body=19.3, lip_sync_r=0.2, fgd=83.77),
        "sg": _mode(psnr_face=20.1), "dg": _mode(hkc=0.5)}}  # fmt: skip
    lines = evaluate_table(metrics).splitlines()
    assert "Sync-C / Sync-D |" in lines[0] and "corpus" not in lines[0]  # official SyncNet
    assert (
        lines[2]
        == "| ground truth | – | 0.704 / 0.100 | 7.200 / 6.100 | ref. / 71.3 / 0.239 | 0.707 |"
    )
    assert lines[3] == "| none | 20.51 / 14.20 / 19.30 | 0.200 / – | – / – | 83.8 / – / – | – |"
    assert lines[4].startswith("| SG | 20.10 / – / – |") and lines[5].endswith("| 0.500 |")
    assert lines[-1] == "*2 test clips at 256 px, from `data/metrics/evaluate.json`.*"


def test_a_hand_edited_number_is_caught_and_write_restores_it(tmp_path):
    for name in (*DOCS, "data/metrics/evaluate.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    metrics = json.loads((tmp_path / "data/metrics/evaluate.json").read_text())
    metrics["modes"]["sg"]["hkc"] = 0.9999  # the metrics moved on, the docs did not
    (tmp_path / "data/metrics/evaluate.json").write_text(json.dumps(metrics))
    assert stale_blocks(tmp_path) == [f"{doc}: table evaluate" for doc in DOCS]
    assert docs_tables(["--root", str(tmp_path), "--check"]) == 1
    assert docs_tables(["--root", str(tmp_path), "--write"]) == 0
    assert stale_blocks(tmp_path) == [] and "| 1.000 |" in (tmp_path / "README.md").read_text()

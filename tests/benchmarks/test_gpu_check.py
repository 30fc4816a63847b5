"""benchmarks/gpu_check: the tiny path on the CPU prints one table, every row measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]
NUMERIC = ("batch", "s/it", "it/s", "peak GiB")


def _table(text: str) -> dict[str, dict[str, str]]:
    """Rows of the printed Markdown table by their ``row`` cell."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(gpu_check.COLUMNS)
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        rows[cells["row"]] = cells
    return rows


def test_the_tiny_check_measures_every_row_on_the_cpu():
    header, rows = gpu_check.run(CPU, tiny=True, budget_s=600)
    table = _table(gpu_check.format_table(rows))
    assert list(table) == list(gpu_check.ROWS)
    for name, cells in table.items():
        assert "skipped" not in cells["note"], (name, cells["note"])
        for column in NUMERIC:
            assert float(cells[column]) > 0, (name, column)
        # s/it is printed rounded: its half last digit bounds the relative error of 1 / s/it.
        s_it = cells["s/it"]
        rounding = 0.5 * 10 ** -len(s_it.partition(".")[2]) / float(s_it)
        assert float(cells["it/s"]) == pytest.approx(1 / float(s_it), rel=2e-3 + 1.01 * rounding)
    for name in ("train_256_b1", "train_256_bmax", "train_512_b1", "train_512_bmax"):
        # Model FLOPs: the same per sample at both batches, MFU against the H200's peak.
        assert float(table[name]["TFLOP/s"]) > 0
        mfu = 100 * float(table[name]["TFLOP/s"]) / gpu_check.H200_BF16_TFLOPS
        assert float(table[name]["MFU %"]) == pytest.approx(mfu, rel=0.01)
    assert table["train_256_bmax"]["batch"] == "2"  # --max-batch of the tiny shapes
    assert table["train_256_b1"]["shape"] == "32x32x4" and table["train_512_b1"]["shape"] == (
        "48x48x6"
    )
    by_row = {r.row: r for r in rows}
    flops = [r.tflops * r.seconds / r.batch for r in rows if r.row.startswith("train_256")]
    assert flops[0] == pytest.approx(flops[1], rel=1e-6)
    assert "1.00 x none" in table["tc_none"]["note"] and " x none" in table["tc_dg"]["note"]
    assert by_row["tc_sg"].seconds > 0 and "random init" in table["tc_none"]["note"]
    assert any("timings only" in line for line in header)


def test_a_spent_budget_skips_every_section_with_its_reason():
    _, rows = gpu_check.run(CPU, tiny=True, budget_s=0)
    table = _table(gpu_check.format_table(rows))
    assert list(table) == list(gpu_check.ROWS)
    for name, cells in table.items():
        assert cells["note"].startswith("skipped: "), name
        assert cells["s/it"] == "-"
    assert "budget" in table["train_256_b1"]["note"]
    assert "TC section did not run" in table["classifier_step"]["note"]


@pytest.mark.slow
def test_the_shell_command_prints_the_table(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny",
                           "--json", str(tmp_path / "rows.json")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = _table(done.stdout)
    assert list(table) == list(gpu_check.ROWS)
    assert all("skipped" not in cells["note"] for cells in table.values())
    assert (tmp_path / "rows.json").exists()

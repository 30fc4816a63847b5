"""``paha demo`` and ``paha review`` refuse bad setups with one line and exit code 2, before
serving anything."""

from __future__ import annotations

import sys

import pytest

from pipeline.cli.main import main as paha


def test_review_without_a_curated_table(tmp_path, capsys):
    code = paha(["review", "--curated", str(tmp_path / "curated"), "--port", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert err.startswith(f"error: {tmp_path / 'curated' / 'clips.parquet'}: curated clip table")


def test_demo_with_a_bad_params_file_or_device(tmp_path, capsys):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[web]')")
    assert paha(["demo", "--params", str(tmp_path / "none.yaml"), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'none.yaml'}: params file not found"
    (tmp_path / "p.yaml").write_text("{}\n")
    assert paha(["demo", "--params", str(tmp_path / "p.yaml"), "--device", "cuda:9"]) == 2
    assert "--device: 'cuda:9' asked for" in capsys.readouterr().err


def test_demo_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    assert paha(["demo"]) == 2
    assert capsys.readouterr().err.strip() == ("error: paha demo needs Gradio: "
                                               "pip install -e '.[web]'")  # fmt: skip

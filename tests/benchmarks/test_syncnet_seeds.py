"""benchmarks/syncnet_seeds: the rows it reads from evaluate.json and their spread."""

import pytest

from benchmarks.syncnet_seeds import spread, sync_rows


def _metrics(c: float, d: float) -> dict:
    return {"modes": {"ground_truth": {"sync_corpus_c": c, "sync_corpus_d": d, "fgd": None},
                      "sg": {"sync_corpus_c": c / 2, "sync_corpus_d": None}}}  # fmt: skip


def test_sync_rows_read_every_mode_present_in_mode_order():
    rows = sync_rows(_metrics(0.2, 0.5), "seed 1")
    assert rows == [
        {
            "instrument": "seed 1",
            "mode": "ground_truth",
            "sync_corpus_c": 0.2,
            "sync_corpus_d": 0.5,
        },
        {"instrument": "seed 1", "mode": "sg", "sync_corpus_c": 0.1, "sync_corpus_d": None},
    ]


def test_spread_is_mean_and_sample_std_over_instruments_skipping_nulls():
    rows = sync_rows(_metrics(0.2, 0.4), "a") + sync_rows(_metrics(0.4, 0.8), "b")
    gt, sg = spread(rows)
    assert gt["mode"] == "ground_truth" and gt["instruments"] == 2
    assert gt["sync_corpus_c_mean"] == pytest.approx(0.3)
    assert gt["sync_corpus_c_std"] == pytest.approx(0.1414, abs=1e-4)  # sqrt(0.02)
    assert gt["sync_corpus_d_mean"] == pytest.approx(0.6)
    assert sg["instruments"] == 2
    assert sg["sync_corpus_d_mean"] is None and sg["sync_corpus_d_std"] is None
    assert sg["sync_corpus_c_std"] == pytest.approx(0.0707, abs=1e-4)

"""benchmarks/classifier_frontier: the training subsets and scaled budgets it runs."""

import pandas as pd
import pytest

from benchmarks.classifier_frontier import scaled_settings, training_subset


def _pairs() -> pd.DataFrame:
    clips = ["s_en_1_001", "s_en_1_002", "s_en_1_003", "s_zh_1_001", "s_zh_1_002", "s_en_2_001"]
    rows = [{"split": "train", "clip_id": c, "window_id": i} for i, c in enumerate(clips * 2)]
    rows += [{"split": "heldout", "clip_id": "s_en_1_009", "window_id": 100 + i} for i in range(3)]
    return pd.DataFrame(rows)


def test_training_subset_takes_speakers_round_robin_and_keeps_every_heldout_row():
    pairs = _pairs()
    three = training_subset(pairs, 3)
    train = three[three["split"] == "train"]
    # one clip of each speaker first (in clip-id order), both windows of each kept clip
    assert sorted(train["clip_id"].unique()) == ["s_en_1_001", "s_en_2_001", "s_zh_1_001"]
    assert len(train) == 6
    assert (three["split"] == "heldout").sum() == 3
    four = training_subset(pairs, 4)
    assert set(four["clip_id"]) - set(three["clip_id"]) == {"s_en_1_002"}
    assert training_subset(pairs, 6).equals(pairs.reset_index(drop=True))


@pytest.mark.parametrize("n", [0, 7])
def test_training_subset_rejects_a_count_outside_the_training_clips(n):
    with pytest.raises(ValueError, match="6 training clips"):
        training_subset(_pairs(), n)


def test_scaled_settings_multiply_the_budget_and_evaluate_at_the_end():
    settings = {
        "steps": 300,
        "sync_fit_steps": 3000,
        "warmup_steps": 30,
        "eval_every": 150,
        "lr": 3e-4,
        "sync_channels": 0,
    }
    half = scaled_settings(settings, 0.5)
    assert half == {
        "steps": 150,
        "sync_fit_steps": 1500,
        "warmup_steps": 15,
        "eval_every": 75,
        "lr": 3e-4,
        "sync_channels": 0,
    }
    assert scaled_settings(settings, 2.0)["steps"] == 600
    assert scaled_settings(settings, 0.001)["steps"] == 1
    assert settings["steps"] == 300  # the input is not changed

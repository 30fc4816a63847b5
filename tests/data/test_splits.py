"""The one held-out rule: per-speaker curated split and the stages' held-out clips."""

import pandas as pd

from pipeline.data.splits import held_out, n_held_out, split_by_speaker, train_and_held_out


def _split_table(n_per_speaker: dict[str, int]) -> pd.DataFrame:
    rows = [
        {"clip_id": f"{s}-{i:03d}", "speaker": s, "kept": True}
        for s, n in n_per_speaker.items()
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_split_is_90_10_per_speaker_and_deterministic():
    table = _split_table({"jon": 40, "seth": 20, "solo": 1, "pair": 2})
    table.loc[3, "kept"] = False
    split = split_by_speaker(table, 0.1, seed=0)
    per = table.assign(split=split).groupby("speaker")["split"].value_counts().unstack(fill_value=0)
    assert per.loc["jon", "test"] == 4 and per.loc["jon", "train"] == 35
    assert per.loc["seth", "test"] == 2 and per.loc["seth", "train"] == 18
    assert per.loc["solo", "test"] == 0 and per.loc["solo", "train"] == 1
    assert per.loc["pair", "test"] == 1 and per.loc["pair", "train"] == 1
    assert split[3] == ""
    assert split.equals(split_by_speaker(table, 0.1, seed=0))
    assert not split.equals(split_by_speaker(table, 0.1, seed=1))


def test_split_independent_of_row_order_and_other_speakers():
    table = _split_table({"jon": 30, "seth": 25})
    split = dict(zip(table["clip_id"], split_by_speaker(table, 0.1, 0), strict=True))
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = dict(zip(shuffled["clip_id"], split_by_speaker(shuffled, 0.1, 0), strict=True))
    assert again == split
    jon_only = table[table["speaker"] == "jon"]
    alone = dict(zip(jon_only["clip_id"], split_by_speaker(jon_only, 0.1, 0), strict=True))
    assert alone == {k: v for k, v in split.items() if k.startswith("jon")}


def test_n_held_out():
    assert [n_held_out(n, 0.1) for n in (0, 1, 2, 5, 10, 15, 100)] == [0, 0, 1, 1, 1, 2, 10]
    assert n_held_out(10, 0.0) == 0
    assert n_held_out(3, 0.9) == 2  # always at least one training clip


def test_held_out_depends_only_on_ids_seed_and_group():
    ids = [f"clip_{i:02d}" for i in range(20)]
    out = held_out(ids, 0.2, seed=3)
    assert len(out) == 4 and out <= set(ids)
    assert held_out(list(reversed(ids)) + ids[:5], 0.2, seed=3) == out  # order, duplicates
    assert held_out(ids, 0.2, seed=3, group="other") != out
    train, heldout = train_and_held_out(ids, 0.2, seed=3)
    assert set(heldout) == out and sorted(train + heldout) == ids
    assert held_out(["only"], 0.5, seed=0) == set()

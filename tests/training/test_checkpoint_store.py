"""Checkpoint folders: exact restore, safe formats, tied weights, atomic saves, listing, pruning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from diffusers.optimization import get_scheduler
from safetensors import safe_open
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipeline.errors import MissingInputError
from pipeline.training import checkpoint_store as store
from pipeline.training.checkpoint_store import (
    CheckpointError,
    TrainingState,
    checkpoint_for_step,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    prune_checkpoints,
    read_state,
    save_checkpoint,
)


class Tiny(nn.Module):
    """Linear -> BatchNorm (float and int64 buffers) -> dropout -> Linear."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.norm(self.inp(x)))))


class Tied(nn.Module):
    """Embedding and output head share one weight."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight


def make_state(init_seed: int, ema: bool = True) -> TrainingState:
    torch.manual_seed(init_seed)
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=4)
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9)) if ema else None
    return TrainingState(model, optimizer, schedule, average)


def train(state: TrainingState, steps: int) -> None:
    """Data, dropout and a python/numpy-driven noise term all draw from the global RNGs."""
    state.model.train()
    for _ in range(steps):
        x = torch.randn(5, 4)
        scale = 1.0 + random.random() + float(np.random.rand())
        loss = (state.model(x) ** 2).mean() * scale
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.lr_schedule.step()
        state.ema.update_parameters(state.model)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_restored_run_continues_identically(tmp_path):
    straight = make_state(0)
    seed_all(123)
    train(straight, steps=6)

    first = make_state(0)
    seed_all(123)
    train(first, steps=3)
    path = save_checkpoint(tmp_path, 3, "fp", first)
    assert path == tmp_path / "step-000000003"
    assert read_state(path) == {"format_version": 2, "step": 3, "fingerprint": "fp",
                                "ema_updates": 3}  # fmt: skip

    resumed = make_state(7)  # other initial weights: everything must come from the checkpoint
    seed_all(999)  # and the RNG states too
    assert load_checkpoint(path, resumed)["step"] == 3
    train(resumed, steps=3)
    assert_same(straight.model.state_dict(), resumed.model.state_dict())
    assert_same(straight.ema.state_dict(), resumed.ema.state_dict())
    assert straight.lr_schedule.state_dict() == resumed.lr_schedule.state_dict()
    assert resumed.lr_schedule.last_epoch == 6
    moments_a = straight.optimizer.state_dict()["state"].values()
    moments_b = resumed.optimizer.state_dict()["state"].values()
    for a, b in zip(moments_a, moments_b, strict=True):
        assert_same(a, b)


def test_files_are_safetensors_and_weights_only_pickles(tmp_path):
    state = make_state(0)
    train(state, steps=2)
    path = save_checkpoint(tmp_path, 2, "fp", state)
    assert sorted(p.name for p in path.iterdir()) == [
        "ema.safetensors", "lr_schedule.pt", "model.safetensors", "optimizer.pt", "rng.pt",
        "state.json",
    ]  # fmt: skip
    with safe_open(str(path / "ema.safetensors"), framework="pt") as handle:
        assert set(handle.keys()) == set(state.model.state_dict())  # the model's own keys
    for name in ("optimizer.pt", "lr_schedule.pt", "rng.pt"):
        torch.load(path / name, weights_only=True)  # nothing but tensors and plain containers
    assert torch.load(path / "lr_schedule.pt", weights_only=True)["last_epoch"] == 2
    # Without an EMA or a schedule their files are not written.
    bare = TrainingState(state.model, state.optimizer)
    assert not (save_checkpoint(tmp_path, 3, "fp", bare) / "ema.safetensors").exists()
    with pytest.raises(CheckpointError, match="an EMA was passed but none was saved"):
        load_checkpoint(tmp_path / "step-000000003", make_state(0))


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = save_checkpoint(tmp_path, 1, "fp", TrainingState(model, optimizer))
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        assert len(list(handle.keys())) == 1
    fresh = Tied()
    load_checkpoint(path, TrainingState(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1)))
    assert fresh.head.weight is fresh.emb.weight
    assert torch.equal(fresh.emb.weight, model.emb.weight)


def test_inference_weights_from_a_file_a_folder_a_root_or_the_ema(tmp_path):
    state = make_state(0)
    train(state, steps=2)
    path = save_checkpoint(tmp_path, 2, "fp", state)
    plain = Tiny()
    assert load_model_weights(tmp_path, plain) == path / "model.safetensors"  # a root: latest
    assert_same(state.model.state_dict(), plain.state_dict())
    averaged = Tiny()
    assert load_model_weights(path, averaged, use_ema=True) == path / "ema.safetensors"
    assert_same(state.ema.module.state_dict(), averaged.state_dict())
    load_model_weights(path / "model.safetensors", averaged)
    assert_same(state.model.state_dict(), averaged.state_dict())
    bare = save_checkpoint(tmp_path, 3, "fp", TrainingState(state.model, state.optimizer))
    with pytest.raises(CheckpointError, match="did not use an EMA"):
        load_model_weights(bare, Tiny(), use_ema=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no checkpoint"):
        load_model_weights(tmp_path / "empty", Tiny())


def test_mismatched_model_names_the_file_and_the_keys(tmp_path):
    state = make_state(0, ema=False)
    path = save_checkpoint(tmp_path, 1, "fp", state)

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 8)
            self.extra = nn.Linear(8, 2)

    with pytest.raises(CheckpointError) as error:
        load_model_weights(path, Renamed())
    message = str(error.value)
    assert "model.safetensors" in message
    assert "missing keys: extra.bias, extra.weight" in message
    assert "unexpected keys:" in message and "out.weight" in message

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(8, 3)

    with pytest.raises(CheckpointError, match=r"model\.safetensors.*size mismatch for out\.bias"):
        load_model_weights(path, Wider())
    (path / "optimizer.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"optimizer\.pt: unreadable"):
        load_checkpoint(path, make_state(0, ema=False))


def test_interrupted_save_keeps_the_previous_latest(tmp_path, monkeypatch):
    state = make_state(0)
    good = save_checkpoint(tmp_path, 100, "fp", state)
    real_save = store._save_torch

    def failing_save(obj, path):
        if path.name == "optimizer.pt":
            raise KeyboardInterrupt("killed mid-save")
        real_save(obj, path)

    monkeypatch.setattr(store, "_save_torch", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 200, "fp", state)
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000100"]  # temp folder removed
    monkeypatch.undo()

    # A hard kill leaves a temp folder behind: never listed, removed by the next save.
    stale = tmp_path / ".step-000000300.tmp"
    stale.mkdir()
    (stale / "state.json").write_text('{"step": 300}')
    (tmp_path / "step-000000400").mkdir()  # no state.json: not complete either
    assert latest_checkpoint(tmp_path) == good
    save_checkpoint(tmp_path, 200, "fp", state)
    assert not stale.exists()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [100, 200]


def test_listing_lookup_and_pruning(tmp_path):
    state = make_state(0, ema=False)
    assert list_checkpoints(tmp_path / "missing") == [] and latest_checkpoint(tmp_path) is None
    for step in (100, 200, 300, 400, 500):
        save_checkpoint(tmp_path, step, "fp", state)
    (tmp_path / "previous-abc" / "step-000000600").mkdir(parents=True)  # not listed
    assert [s for s, _ in list_checkpoints(tmp_path)] == [100, 200, 300, 400, 500]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000000500"
    assert checkpoint_for_step(tmp_path, 300) == tmp_path / "step-000000300"
    with pytest.raises(MissingInputError, match=r"step 250 .*100, 200, 300, 400, 500") as error:
        checkpoint_for_step(tmp_path, 250)
    assert str(tmp_path) in str(error.value)

    assert prune_checkpoints(tmp_path, keep_last=7) == []  # fewer than kept: none goes
    removed = prune_checkpoints(tmp_path, keep_last=2, protect_steps={200})
    assert [p.name for p in removed] == ["step-000000100", "step-000000300"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "previous-abc", "step-000000200", "step-000000400", "step-000000500",
    ]  # fmt: skip
    # Re-saving a step replaces it.
    save_checkpoint(tmp_path, 500, "other", state)
    assert read_state(tmp_path / "step-000000500")["fingerprint"] == "other"
    (tmp_path / "step-000000500" / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"state\.json: unreadable"):
        read_state(tmp_path / "step-000000500")

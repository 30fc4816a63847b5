"""Checkpoints: exact resumption, tied/odd tensors, atomic saves, listing, pruning, NaN guard."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from pipeline.training import checkpoints as ckpt
from pipeline.training.checkpoints import (
    CheckpointError,
    NonFiniteLossError,
    check_loss,
    checkpoint_for_step,
    is_checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    prune_checkpoints,
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
    """Embedding and output head share one weight; plus a transposed and an overlapping buffer."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("full", torch.randn(4, 3))
        self.register_buffer("rows", self.full[:2])  # a view of another buffer's storage
        self.register_buffer("transposed", torch.randn(3, 5).t())  # non-contiguous


def make_run(init_seed: int):
    torch.manual_seed(init_seed)
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    ema = [p.detach().clone() for p in model.parameters()]
    return model, optimizer, scheduler, ema


def train(model, optimizer, scheduler, ema, steps):
    """Data, dropout and a python/numpy-driven noise term all draw from the global RNGs."""
    model.train()
    for _ in range(steps):
        x = torch.randn(5, 4)
        scale = 1.0 + random.random() + float(np.random.rand())
        loss = (model(x) ** 2).mean() * scale
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            for shadow, param in zip(ema, model.parameters(), strict=True):
                shadow.lerp_(param, 0.1)


def seed_all(seed):
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def assert_same_structure(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_structure(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_structure(x, y)
    else:
        assert a == b and type(a) is type(b)


def test_resumed_run_continues_identically(tmp_path):
    straight = make_run(0)
    seed_all(123)
    train(*straight, steps=6)

    first = make_run(0)
    seed_all(123)
    train(*first, steps=3)
    path = save_checkpoint(tmp_path, 3, first[0], first[1], first[3], first[2], extra={"a": 1})
    assert path == tmp_path / "step-000000003"

    resumed = make_run(7)  # different initial weights: everything must come from the checkpoint
    seed_all(999)  # and the RNG states too
    state = load_checkpoint(path, resumed[0], resumed[1], resumed[3], resumed[2])
    assert state["step"] == 3 and state["extra"] == {"a": 1}
    assert_same_structure(first[1].state_dict(), resumed[1].state_dict())
    train(*resumed, steps=3)

    model_a, optimizer_a, scheduler_a, ema_a = straight
    model_b, optimizer_b, scheduler_b, ema_b = resumed
    assert_same_structure(model_a.state_dict(), model_b.state_dict())
    assert_same_structure(optimizer_a.state_dict(), optimizer_b.state_dict())
    assert scheduler_a.state_dict() == scheduler_b.state_dict()
    assert scheduler_b.last_epoch == 6
    for x, y in zip(ema_a, ema_b, strict=True):
        assert torch.equal(x, y)


def test_optimizer_files_are_safetensors_plus_json(tmp_path):
    model, optimizer, scheduler, ema = make_run(0)
    train(model, optimizer, scheduler, ema, steps=2)
    path = save_checkpoint(tmp_path, 2, model, optimizer, ema, scheduler)
    with safe_open(str(path / "optimizer.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= keys
    structure = json.loads((path / "optimizer.json").read_text())["structure"]
    assert structure["param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.999]}
    assert json.loads((path / "scheduler.json").read_text())["structure"]["last_epoch"] == 2
    assert not (path / "scheduler.safetensors").exists()
    assert sorted(p.name for p in path.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
        "rng.safetensors",
        "scheduler.json",
        "state.json",
    ]


def test_optimizer_step_as_float_and_odd_values_round_trip(tmp_path):
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["step"] = 5.0  # older optimizers keep plain numbers
    state["state"][0]["note"] = (float("inf"), None, "x")
    optimizer.load_state_dict(state)
    save_checkpoint(tmp_path, 1, model, optimizer)
    fresh = torch.optim.SGD(Tiny().parameters(), lr=0.5, momentum=0.1)
    load_checkpoint(tmp_path / "step-000000001", Tiny(), fresh)
    assert_same_structure(optimizer.state_dict(), fresh.state_dict())


def test_tied_noncontiguous_and_overlapping_tensors(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    path = save_checkpoint(tmp_path, 1, model, save_rng=False)
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        stored = set(handle.keys())
    assert "emb.weight" in stored and "head.weight" not in stored  # tied: stored once
    fresh = Tied()
    load_checkpoint(path, fresh)
    assert fresh.head.weight is fresh.emb.weight
    assert_same_structure(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        {k: v.contiguous() for k, v in fresh.state_dict().items()},
    )
    plain = Tied()
    plain.head.weight = nn.Parameter(torch.zeros(10, 4))  # an untied model gets both
    load_model_weights(path, plain)
    assert torch.equal(plain.head.weight, model.emb.weight)


def test_wrapped_model_is_saved_unwrapped(tmp_path):
    model = Tiny()
    path = save_checkpoint(tmp_path, 1, nn.DataParallel(model))
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        stored = set(handle.keys())
    assert stored and not any(key.startswith("module.") for key in stored)
    target = nn.DataParallel(Tiny())
    load_checkpoint(path, target)
    assert_same_structure(model.state_dict(), target.module.state_dict())
    custom = Tiny()
    load_checkpoint(path, {"net": custom}, unwrap=lambda wrapped: wrapped["net"])
    assert_same_structure(model.state_dict(), custom.state_dict())


def test_ema_module_and_state_dict_objects(tmp_path):
    model, ema_model = Tiny(), Tiny()
    path = save_checkpoint(tmp_path, 1, model, ema=ema_model)
    restored = Tiny()
    load_checkpoint(path, Tiny(), ema=restored)
    assert_same_structure(ema_model.state_dict(), restored.state_dict())
    inference = Tiny()
    assert load_model_weights(path, inference, use_ema=True) == path / "ema.safetensors"
    assert_same_structure(ema_model.state_dict(), inference.state_dict())

    class ShadowEma:  # the shape of diffusers' EMAModel
        def __init__(self, params):
            self.decay, self.optimization_step = 0.99, 0
            self.shadow_params = [p.detach().clone() for p in params]

        def state_dict(self):
            return {"decay": self.decay, "optimization_step": self.optimization_step,
                    "shadow_params": self.shadow_params}  # fmt: skip

        def load_state_dict(self, state):
            self.decay, self.optimization_step = state["decay"], state["optimization_step"]
            self.shadow_params = [p.clone() for p in state["shadow_params"]]

    ema = ShadowEma(Tiny().parameters())
    ema.optimization_step = 42
    path = save_checkpoint(tmp_path, 2, model, ema=ema)
    other = ShadowEma(Tiny().parameters())
    load_checkpoint(path, Tiny(), ema=other)
    assert other.optimization_step == 42 and other.decay == 0.99
    for x, y in zip(ema.shadow_params, other.shadow_params, strict=True):
        assert torch.equal(x, y)
    inference = Tiny()
    load_model_weights(path, inference, use_ema=True)
    for x, y in zip(ema.shadow_params, inference.parameters(), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(inference.norm.running_mean, model.norm.running_mean)  # buffers: model


def test_param_list_ema_for_inference(tmp_path):
    model, optimizer, scheduler, ema = make_run(0)
    train(model, optimizer, scheduler, ema, steps=2)
    path = save_checkpoint(tmp_path, 2, model, ema=ema)
    inference = Tiny()
    load_model_weights(tmp_path, inference, use_ema=True)  # a root: its latest checkpoint
    for x, y in zip(ema, inference.parameters(), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(inference.norm.running_var, model.norm.running_var)
    load_model_weights(path / "model.safetensors", inference)
    assert_same_structure(model.state_dict(), inference.state_dict())


def test_interrupted_save_keeps_previous_latest(tmp_path, monkeypatch):
    model, optimizer, _, _ = make_run(0)
    good = save_checkpoint(tmp_path, 100, model, optimizer)
    real_save = ckpt._save_tensors

    def failing_save(tensors, path, metadata):
        if path.name == "optimizer.safetensors":
            raise KeyboardInterrupt("killed mid-save")
        real_save(tensors, path, metadata)

    monkeypatch.setattr(ckpt, "_save_tensors", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 200, model, optimizer)
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000100"]  # temp dir cleaned
    monkeypatch.undo()

    def failing_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(ckpt.os, "replace", failing_rename)
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint(tmp_path, 200, model, optimizer)
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [(100, good)]

    # A hard kill leaves a temp dir behind: never listed, removed by the next save.
    stale = tmp_path / ".step-000000300.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    (stale / "state.json").write_text('{"step": 300}')
    (tmp_path / "step-000000400").mkdir()  # no state.json: not complete either
    assert latest_checkpoint(tmp_path) == good
    save_checkpoint(tmp_path, 200, model, optimizer)
    assert not stale.exists()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [100, 200]


def test_listing_lookup_and_pruning(tmp_path):
    model = Tiny()
    assert list_checkpoints(tmp_path / "missing") == [] and latest_checkpoint(tmp_path) is None
    for step in (100, 200, 300, 400, 500):
        save_checkpoint(tmp_path, step, model, save_rng=False, extra={"step": step})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [100, 200, 300, 400, 500]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000000500"
    assert checkpoint_for_step(tmp_path, 300) == tmp_path / "step-000000300"
    with pytest.raises(FileNotFoundError, match=r"step 250 .*100, 200, 300, 400, 500") as error:
        checkpoint_for_step(tmp_path, 250)
    assert str(tmp_path) in str(error.value)

    removed = prune_checkpoints(tmp_path, keep_last=2, protect_steps={200})
    assert [p.name for p in removed] == ["step-000000100", "step-000000300"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [200, 400, 500]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000200",
        "step-000000400",
        "step-000000500",
    ]
    # Re-saving a step replaces it.
    save_checkpoint(tmp_path, 500, model, save_rng=False, extra={"again": True})
    assert load_checkpoint(tmp_path / "step-000000500", Tiny())["extra"] == {"again": True}


def test_is_checkpoint_step():
    saves = [s for s in range(1, 251) if is_checkpoint_step(s, 100, 250, keep_steps={130})]
    assert saves == [100, 130, 200, 250]


def test_strict_load_names_file_and_keys(tmp_path):
    path = save_checkpoint(tmp_path, 1, Tiny(), save_rng=False)

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 8)
            self.extra = nn.Linear(8, 2)

    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, Renamed())
    message = str(error.value)
    assert "model.safetensors" in message
    assert "missing keys: extra.bias, extra.weight" in message
    assert "unexpected keys:" in message and "out.weight" in message
    load_checkpoint(path, Renamed(), strict=False)  # loads what matches

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(8, 3)

    with pytest.raises(CheckpointError, match=r"size mismatch: out.bias: checkpoint \(2,\)"):
        load_checkpoint(path, Wider(), strict=False)
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint(path, Tiny(), torch.optim.AdamW(Tiny().parameters()))


def test_nan_loss_and_nan_weights_keep_last_good(tmp_path):
    model = Tiny()
    good = save_checkpoint(tmp_path, 10, model, save_rng=False)
    check_loss(torch.tensor(0.5), 11, tmp_path)
    with pytest.raises(NonFiniteLossError, match=rf"nan at step 11.*{good.name}"):
        check_loss(torch.tensor(float("nan")), 11, tmp_path)
    with torch.no_grad():
        model.out.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="out.weight"):
        save_checkpoint(tmp_path, 20, model)
    assert list_checkpoints(tmp_path) == [(10, good)]
    with pytest.raises(ValueError, match="extra"):
        save_checkpoint(tmp_path, 30, Tiny(), extra={"loss": float("nan")})


def test_structure_encoding_round_trip():
    value = {
        "state": {0: {"t": torch.ones(2)}, 1: {"t": torch.zeros(1)}},
        "groups": [{"betas": (0.9, 0.99), "lr": torch.tensor(0.1), "none": None}],
        "__private": float("-inf"),
        2.5: "float key",
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = ckpt._encode(value, "", tensors)
    json.dumps(encoded, allow_nan=False)  # strict JSON
    assert set(tensors) == {"state.0.t", "state.1.t", "groups.0.lr"}
    assert_same_structure(value, ckpt._decode(encoded, tensors))
    with pytest.raises(TypeError, match="object"):
        ckpt._encode({"x": object()}, "", {})

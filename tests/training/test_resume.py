"""Run fingerprints and the choice of checkpoint: other settings move aside, and come back."""

from __future__ import annotations

import json

import torch
from torch import nn

from pipeline.config import TrainGestureAEParams
from pipeline.training.checkpoint_store import TrainingState, list_checkpoints, save_checkpoint
from pipeline.training.resume import (
    checkpoint_fingerprint,
    checkpoint_to_resume,
    fingerprint,
    resumable_checkpoint,
    weights_digest,
)


def _state() -> TrainingState:
    model = nn.Linear(2, 1)
    return TrainingState(model, torch.optim.SGD(model.parameters(), lr=0.1))


def _steps(folder) -> list[int]:
    return [step for step, _ in list_checkpoints(folder)]


def test_fingerprint_ignores_resumable_changes_only():
    base = TrainGestureAEParams()
    ids = ["b", "a"]
    run = fingerprint(base, ids, {"digest": "x"})
    assert run == fingerprint(base.model_copy(update={"steps": 5000, "save_every": 7,
                                                      "log_every": 3}), ["a", "b"],
                              {"digest": "x"})  # fmt: skip
    assert run != fingerprint(base.model_copy(update={"lr": 0.5}), ids, {"digest": "x"})
    assert run != fingerprint(base, ids + ["c"], {"digest": "x"})
    assert run != fingerprint(base, ids, {"digest": "y"})
    assert len(run) == 16


def test_weights_digest_tells_weights_apart():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    assert weights_digest(a) == weights_digest(a) != weights_digest(b)


def test_weights_digest_hashes_scalar_parameters():
    # UniVDM's reference gate, started from a pretrained SVD UNet, is a 0-dim parameter.
    a, b = torch.nn.Module(), torch.nn.Module()
    a.gate, b.gate = torch.nn.Parameter(torch.tensor(0.0)), torch.nn.Parameter(torch.tensor(1.0))
    assert weights_digest(a) != weights_digest(b)
    c = torch.nn.Module()
    c.gate = torch.nn.Parameter(torch.tensor([0.0]))  # the same bytes as a one-element vector
    assert weights_digest(a) == weights_digest(c)


def test_changed_settings_move_the_old_checkpoints_aside_and_back(tmp_path):
    state = _state()
    for step in (2, 4):
        save_checkpoint(tmp_path, step, "run-a", state)
    assert checkpoint_to_resume(tmp_path, "run-a") == tmp_path / "step-000000004"

    # Other settings: nothing to resume, and run-a's checkpoints are kept aside, complete.
    assert resumable_checkpoint(tmp_path, "run-b") is None
    assert checkpoint_to_resume(tmp_path, "run-b") is None
    assert _steps(tmp_path) == []
    aside = tmp_path / "previous-run-a"
    assert _steps(aside) == [2, 4]
    assert checkpoint_fingerprint(aside / "step-000000004") == "run-a"

    # run-b trains a while; then the settings change back: run-a resumes where it stopped.
    save_checkpoint(tmp_path, 2, "run-b", state)
    assert resumable_checkpoint(tmp_path, "run-a") == aside / "step-000000004"  # moves nothing
    assert _steps(tmp_path) == [2] and _steps(aside) == [2, 4]
    assert checkpoint_to_resume(tmp_path, "run-a") == tmp_path / "step-000000004"
    assert _steps(tmp_path) == [2, 4] and not aside.exists()
    assert _steps(tmp_path / "previous-run-b") == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "previous-run-b", "step-000000002", "step-000000004",
    ]  # fmt: skip


def test_checkpoints_of_the_former_format_are_set_aside(tmp_path):
    old = tmp_path / "step-000000010"
    old.mkdir()
    (old / "state.json").write_text(json.dumps({"format_version": 1, "step": 10,
                                                "extra": {"fingerprint": "abc"}}))  # fmt: skip
    assert checkpoint_fingerprint(old) == "format1-abc"
    assert checkpoint_to_resume(tmp_path, "abc") is None
    assert _steps(tmp_path / "previous-format1-abc") == [10]

"""The training skeleton on a tiny regression: learning, exact resume with dropout, NaN guard,
logging and evaluation periods, saving, pruning and the diffusers warm-up."""

from __future__ import annotations

import pytest
import torch
from diffusers.optimization import get_scheduler
from torch import nn

from pipeline.training.checkpoint_store import TrainingState, list_checkpoints, load_checkpoint
from pipeline.training.loop import (
    LoopSettings,
    TrainingDiverged,
    TrainingLoop,
    is_checkpoint_step,
    step_seed,
)
from tests.conftest import FakeLive

X = torch.linspace(-1, 1, 64 * 3).reshape(64, 3)
Y = X @ torch.tensor([[1.0], [-2.0], [0.5]])


def _state(seed: int = 0, warmup: int = 0) -> TrainingState:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup)
    return TrainingState(model, optimizer, schedule)


def _settings(**kw) -> LoopSettings:
    base = {"name": "toy", "steps": 6, "seed": 0, "save_every": 2, "keep_checkpoints": 5,
            "log_every": 1, "max_grad_norm": 1.0}  # fmt: skip
    return LoopSettings(**(base | kw))


def _step_fn(model: nn.Module, nan_at: int | None = None):
    def step_losses(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        index = torch.randint(0, len(X), (8,), generator=generator)
        loss = ((model(X[index]) - Y[index]) ** 2).mean()
        if step == nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "scale": torch.tensor(float("inf"))}  # not finite: not logged

    return step_losses


def test_loss_falls_and_logging_evaluation_and_saving_follow_their_periods(tmp_path):
    state, live = _state(), FakeLive()
    loop = TrainingLoop(state, _settings(steps=60, save_every=25, log_every=10, eval_every=20),
                        tmp_path, "fp", live)  # fmt: skip
    result = loop.run(_step_fn(state.model), evaluate=lambda step: {"figure": float(step)})
    losses = [row["loss"] for row in result.history]
    assert [row["step"] for row in result.history] == list(range(1, 61))
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert set(result.history[0]) == {"step", "loss", "lr"}
    assert [e["step"] for e in result.evaluations] == [20, 40, 60]
    assert sorted({s for s, name, _ in live.rows if name == "loss"}) == [10, 20, 30, 40, 50, 60]
    assert [s for s, name, _ in live.rows if name == "figure"] == [20, 40, 60]
    assert result.checkpoints == [25, 50, 60]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [25, 50, 60]


def test_resumed_run_is_bit_identical_with_dropout(tmp_path):
    straight = _state()
    TrainingLoop(straight, _settings(), tmp_path / "a", "fp").run(_step_fn(straight.model))
    first = _state()
    TrainingLoop(first, _settings(steps=3, save_every=3), tmp_path / "b", "fp").run(
        _step_fn(first.model)
    )
    resumed = _state(seed=7)  # other weights: the checkpoint replaces them
    result = TrainingLoop(resumed, _settings(), tmp_path / "b", "fp").run(_step_fn(resumed.model))
    assert (result.first_step, result.last_step) == (3, 6)
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    # Finished: nothing runs, the step function is not called.
    again = TrainingLoop(_state(), _settings(), tmp_path / "b", "fp").run(lambda *_: 1 / 0)
    assert (again.first_step, again.last_step, again.history) == (6, 6, [])


def test_nan_loss_stops_before_the_update_and_names_the_last_good_checkpoint(tmp_path):
    state = _state()
    loop = TrainingLoop(state, _settings(), tmp_path, "fp")
    with pytest.raises(TrainingDiverged, match=r"toy: loss is nan at step 5; the last good "
                                               r"checkpoint is .*step-000000004"):  # fmt: skip
        loop.run(_step_fn(state.model, nan_at=5))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4]
    saved = _state(seed=3)
    load_checkpoint(tmp_path / "step-000000004", saved)
    for a, b in zip(state.model.state_dict().values(), saved.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)  # step 5 changed nothing


def test_non_finite_weights_are_never_saved(tmp_path):
    state = _state()
    fn = _step_fn(state.model)

    def breaking(step, generator):
        losses = fn(step, generator)
        if step == 4:  # after its loss: the step's update keeps the inf
            with torch.no_grad():
                state.model[0].bias[0] = float("inf")
        return losses

    with pytest.raises(TrainingDiverged, match=r"not saving step 4: NaN/inf in 0\.bias"):
        TrainingLoop(state, _settings(), tmp_path, "fp").run(breaking)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]


def test_protected_steps_are_saved_and_survive_pruning(tmp_path):
    state = _state()
    settings = _settings(keep_checkpoints=1, protect_steps=frozenset({3}))
    TrainingLoop(state, settings, tmp_path, "fp").run(_step_fn(state.model))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 6]
    saves = [s for s in range(1, 251) if is_checkpoint_step(s, 100, 250, {130})]
    assert saves == [100, 130, 200, 250]


def test_warmup_is_diffusers_constant_with_warmup(tmp_path):
    """diffusers' factor is ``step / warmup``: 0 at the first step (ours was ``1 / warmup``)."""
    state = _state(warmup=4)
    result = TrainingLoop(state, _settings(), tmp_path, "fp").run(_step_fn(state.model))
    assert [row["lr"] for row in result.history] == pytest.approx(
        [0.0, 2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2]
    )


def test_step_seeds_differ_by_step_and_rank_and_are_stable():
    seeds = {step_seed(0, s, r) for s in range(50) for r in range(4)}
    assert len(seeds) == 200
    assert step_seed(3, 7, 1) == step_seed(3, 7, 1) != step_seed(4, 7, 1)

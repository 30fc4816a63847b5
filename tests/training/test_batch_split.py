"""``batch_size`` is the global batch of one optimizer step, for every trainer.

Per-device batch and gradient accumulation derive from it and the process count
(:func:`batch_split`); a step's shard ``k`` reads the same items and draws the same noise
however the shards are laid out, so two processes with one item each train what one process
accumulating two micro-batches trains: the same loss and learning rate at every step (the LR
schedule steps once per optimizer step, not once per process), for UniVDM and the VAE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import InputError
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.loop import (
    LoopSettings,
    TrainingLoop,
    batch_split,
    shard_index,
)
from tests.distributed import run_two_ranks

STEPS = 5


def test_batch_split_derives_per_device_batch_and_accumulation():
    paper = batch_split("train_univdm", 8, 8)  # "batch size 8 on 8 H800": one window a card
    assert (paper.per_device, paper.accumulation, paper.shards) == (1, 1, 8)
    one_card = batch_split("train_univdm", 8, 1, micro_batch=2)
    assert (one_card.per_device, one_card.accumulation, one_card.shards) == (2, 4, 4)
    assert batch_split("train_vae", 8, 2).per_device == 4
    assert batch_split("train_vae", 8, 2, micro_batch=1).accumulation == 4
    with pytest.raises(InputError, match="train_univdm.batch_size 8 cannot be split evenly over 3"):
        batch_split("train_univdm", 8, 3)
    with pytest.raises(InputError, match="4 items per process .* micro-batches of 3"):
        batch_split("train_univdm", 8, 2, micro_batch=3)
    with pytest.raises(InputError, match="cannot be split"):
        batch_split("train_vae", 2, 4)  # fewer items than processes


def test_shards_are_numbered_micro_batch_major():
    # 2 processes x 2 micro-batches: rank 0 runs shards 0 and 2, rank 1 shards 1 and 3.
    assert [shard_index(m, r, 2) for m in range(2) for r in range(2)] == [0, 1, 2, 3]
    assert [shard_index(m, 0, 1) for m in range(4)] == [0, 1, 2, 3]  # one process: in order


def test_accumulated_micro_batches_step_like_the_mean_loss(tmp_path):
    """A linear model, SGD: accumulating 2 micro-batches of 1 item is one step on the mean loss
    of both items (hand-computed gradient), the LR schedule stepped once a step."""
    items = {0: (1.0, 2.0), 1: (2.0, -1.0)}  # shard -> (x, y)

    def run(accumulation: int) -> tuple[float, list[float]]:
        model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(model.weight, 0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
        settings = LoopSettings("toy", steps=2, seed=0, save_every=10, keep_checkpoints=1,
                                log_every=1, accumulation=accumulation)  # fmt: skip
        loop = TrainingLoop(TrainingState(model, optimizer, schedule), settings,
                            tmp_path / f"a{accumulation}", "fp")  # fmt: skip

        def step_fn(step, generator):
            shards = [loop.shard] if accumulation == 2 else [0, 1]
            x = torch.tensor([[items[k][0]] for k in shards])
            y = torch.tensor([[items[k][1]] for k in shards])
            return {"loss": ((model(x) - y) ** 2).mean()}

        result = loop.run(step_fn)
        return float(model.weight.detach()), [row["lr"] for row in result.history]

    weight, lrs = run(2)
    assert lrs == [0.1, 0.05]  # once per optimizer step
    # By hand: dL/dw = mean over items of 2 x (w x - y): (-3 + 8) / 2 = 2.5 at w = 0.5, so
    # w = 0.5 - 0.1 * 2.5 = 0.25; then (-3.5 + 6) / 2 = 1.25, w = 0.25 - 0.05 * 1.25 = 0.1875.
    assert weight == pytest.approx(0.1875, abs=1e-6)
    one_batch, one_batch_lrs = run(1)
    assert one_batch == pytest.approx(weight, abs=1e-6) and one_batch_lrs == lrs


def _univdm_run(folder: Path, accelerator, **overrides) -> list[dict]:
    from pipeline.training.univdm_trainer import train_univdm
    from tests.training.test_univdm_trainer import TinyWindows, _model, _params, _vae

    params = _params(steps=STEPS, warmup_steps=3, save_every=STEPS, **overrides)
    result = train_univdm(_model(), _vae(), TinyWindows(), params, folder, "fp",
                          accelerator=accelerator)  # fmt: skip
    return result.history


def _vae_run(folder: Path, accelerator, **overrides) -> list[dict]:
    from pipeline.training.vae_trainer import train_vae
    from tests.training.test_vae_trainer import _frames, _params, _vae

    params = _params(steps=STEPS, warmup_steps=3, save_every=STEPS, batch_size=2, **overrides)
    result = train_vae(_vae(params), _frames(), params, folder, "fp", accelerator=accelerator)
    return result.history


def test_two_processes_train_as_one_process_accumulating_two(tmp_path):
    """DDP on the CPU (gloo, torchrun as ``accelerate launch`` runs it): ``batch_size`` 2 over 2
    processes (one item each) against 1 process with ``micro_batch_size`` 1 (accumulation 2)."""
    out = tmp_path / "ddp"
    out.mkdir()
    done = run_two_ranks(__file__, out, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = {"univdm": _univdm_run(tmp_path / "u", None, micro_batch_size=1),
                  "vae": _vae_run(tmp_path / "v", None, micro_batch_size=1)}  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    for name, history in single.items():
        ddp = json.loads((out / f"{name}.json").read_text())
        assert [r["step"] for r in ddp] == list(range(1, STEPS + 1)), name
        np.testing.assert_allclose([r["loss"] for r in ddp], [r["loss"] for r in history],
                                   rtol=1e-4, atol=1e-6, err_msg=name)  # fmt: skip
        lrs = [r["lr"] for r in ddp]
        assert lrs == [r["lr"] for r in history], name
        assert lrs[:3] == pytest.approx([0.0, lrs[3] / 3, 2 * lrs[3] / 3]), name  # warm-up: 3
    # ... and the losses differ from step 2 on when the layouts differ (the check can fail):
    other = _univdm_run(tmp_path / "u2", None)  # one micro-batch of 2: other shards, other noise
    assert other[1]["loss"] != pytest.approx(single["univdm"][1]["loss"], rel=1e-4)


def _ddp_worker(out: Path) -> None:
    """The 2-process test's rank: UniVDM and the VAE, ``batch_size`` 2, one item a rank."""
    from pipeline.models.device import CPU, make_accelerator

    torch.set_num_threads(1)
    accelerator = make_accelerator(CPU)
    assert accelerator.num_processes == 2
    rank = accelerator.process_index
    histories = {"univdm": _univdm_run(out / f"u{rank}", accelerator),
                 "vae": _vae_run(out / f"v{rank}", accelerator)}  # fmt: skip
    if accelerator.is_main_process:
        for name, history in histories.items():
            (out / f"{name}.json").write_text(json.dumps(history))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))

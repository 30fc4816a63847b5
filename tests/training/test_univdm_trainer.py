"""UniVDM training: the loss falls, checkpoints resume exactly, NaN stops cleanly."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from pipeline.config import TrainUnivdmParams
from pipeline.models.schedulers import add_noise, noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.checkpoint_store import list_checkpoints
from pipeline.training.loop import TrainingDiverged
from pipeline.training.univdm_trainer import build_univdm, first_frame_condition, train_univdm

SIZE, FRAMES = 32, 3


class TinyWindows(torch.utils.data.Dataset):
    """Item i is fixed by i: a moving bright square with an audio feature that encodes it."""

    def __init__(self, nan_after: int | None = None):
        self.nan_after = nan_after

    def __len__(self):
        return 10**6

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        start = int(torch.randint(0, 8, (1,), generator=g))
        video = torch.full((FRAMES, 3, SIZE, SIZE), -1.0)
        for f in range(FRAMES):
            x = 4 + 2 * (start + f)
            video[f, :, 8:16, x : x + 8] = 1.0
        audio = torch.zeros(FRAMES, 3, 4)
        audio[..., 0] = start
        weights = torch.ones(FRAMES, SIZE, SIZE)
        weights[:, 8:16] = 5.0
        if self.nan_after is not None and index >= self.nan_after:
            weights[:] = float("nan")
        areas = torch.zeros(3, FRAMES, SIZE, SIZE, dtype=torch.bool)
        areas[0, :, 8:16] = True
        return {"video": video, "reference": video[0], "audio": audio, "par_weights": weights,
                "areas": areas, "first_frame": torch.tensor(index % 2 == 0)}  # fmt: skip


def _vae():
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                         norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=SIZE)  # fmt: skip


def _model():
    torch.manual_seed(0)
    return UniVDM(UniVDMConfig(latent_size=SIZE // 2, frames=FRAMES, audio_dim=4, audio_context=1,
                               block_out_channels=[32, 32], cross_attention_dim=32,
                               addition_time_embed_dim=8))  # fmt: skip


def _params(**overrides):
    base = {"steps": 6, "batch_size": 2, "lr": 2e-3, "warmup_steps": 0, "save_every": 3,
            "keep_checkpoints": 5, "log_every": 1, "num_train_timesteps": 100}  # fmt: skip
    return TrainUnivdmParams(**(base | overrides))


def test_add_noise_is_eq1_with_one_timestep_per_sample():
    scheduler = noise_scheduler(_params().num_train_timesteps, _params().beta_schedule)
    latents, noise = torch.ones(2, 3, 1, 2, 2), torch.zeros(2, 3, 1, 2, 2)
    noisy = add_noise(scheduler, latents, noise, torch.tensor([0, 99]))
    abar = scheduler.alphas_cumprod
    torch.testing.assert_close(noisy[0], torch.full_like(noisy[0], abar[0].sqrt().item()))
    torch.testing.assert_close(noisy[1], torch.full_like(noisy[1], abar[99].sqrt().item()))


def test_first_frame_condition_marks_only_frame_zero():
    latents = torch.randn(2, 3, 4, 2, 2)
    condition, mask = first_frame_condition(latents, torch.tensor([True, False]))
    assert mask.tolist() == [[1, 0, 0], [0, 0, 0]]
    torch.testing.assert_close(condition[0, 0], latents[0, 0])
    assert (condition[0, 1:] == 0).all() and (condition[1] == 0).all()


def test_training_lowers_the_loss(tmp_path):
    model, vae = _model(), _vae()
    result = train_univdm(model, vae, TinyWindows(), _params(steps=40, save_every=100),
                          tmp_path / "ckpt", "run")  # fmt: skip
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8
    assert {"loss", "loss_par", "mse", "mse_hand", "lr"} <= set(result.history[-1])
    # PAR weights of 5 inside the hand band: the weighted loss exceeds the plain MSE.
    assert result.history[-1]["loss_par"] > result.history[-1]["mse"]


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight = _model()
    train_univdm(straight, _vae(), TinyWindows(), _params(), tmp_path / "a", "run")
    interrupted = _model()
    first = train_univdm(interrupted, _vae(), TinyWindows(), _params(steps=3), tmp_path / "b",
                         "run")  # fmt: skip
    assert first.last_step == 3
    resumed = _model()  # a fresh process: new model, optimizer state comes from the checkpoint
    second = train_univdm(resumed, _vae(), TinyWindows(), _params(), tmp_path / "b", "run")
    assert second.first_step == 3 and second.last_step == 6
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [3, 6]


def test_other_settings_do_not_resume(tmp_path):
    train_univdm(_model(), _vae(), TinyWindows(), _params(steps=3), tmp_path / "c", "run-a")
    result = train_univdm(_model(), _vae(), TinyWindows(), _params(steps=3), tmp_path / "c",
                          "run-b")  # fmt: skip
    assert result.first_step == 0 and result.last_step == 3


def test_protected_step_checkpoint_is_kept(tmp_path):
    params = _params(steps=6, save_every=2, keep_checkpoints=1)
    train_univdm(_model(), _vae(), TinyWindows(), params, tmp_path / "d", "run",
                 protect_steps={3})  # fmt: skip
    assert [s for s, _ in list_checkpoints(tmp_path / "d")] == [3, 6]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    params = _params(steps=6, save_every=2)
    # Items of step 4 onwards (indices >= 6 with batch 2) carry NaN weights.
    with pytest.raises(TrainingDiverged, match="at step 4; the last good checkpoint is .*step"):
        train_univdm(_model(), _vae(), TinyWindows(nan_after=6), params, tmp_path / "e", "run")
    assert [s for s, _ in list_checkpoints(tmp_path / "e")] == [2]


def test_step_range_shards_ranks_and_depends_only_on_the_step():
    from pipeline.training.loop import batch_split
    from pipeline.training.univdm_trainer import _StepRange

    two_ranks = batch_split("t", 6, 2)  # 3 items per rank, no accumulation
    rank0, rank1 = list(_StepRange(2, 4, two_ranks, 0)), list(_StepRange(2, 4, two_ranks, 1))
    assert rank0 == [12, 13, 14, 18, 19, 20] and rank1 == [15, 16, 17, 21, 22, 23]
    assert list(_StepRange(3, 4, two_ranks, 0)) == rank0[3:]  # resuming at step 3
    # One process accumulating the two shards reads both ranks' items, shard by shard.
    one = batch_split("t", 6, 1, micro_batch=3)
    assert list(_StepRange(2, 4, one, 0)) == [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]


def test_build_univdm_starts_from_a_pretrained_svd_unet(tmp_path):
    """train_univdm.unet.pretrained: the stage's builder loads the folder (SVD layout, gated
    reference attention, svd parametrisation) and names a missing one in one error."""
    from diffusers import UNetSpatioTemporalConditionModel

    from pipeline.errors import MissingInputError
    from pipeline.training.univdm_trainer import univdm_config

    unet = {"block_out_channels": [32, 64], "attention_head_dim": 8, "cross_attention_dim": 32,
            "addition_time_embed_dim": 8, "cross_attention_levels": [True, False],
            "parametrisation": "svd", "pretrained": str(tmp_path / "unet")}  # fmt: skip
    params = _params(size=SIZE, frames=FRAMES, audio_context=1, unet=unet)
    with pytest.raises(MissingInputError, match="unet: no pretrained UNet here"):
        build_univdm(params, 25.0, _vae(), 4, None)
    config = univdm_config(params, 25.0, 4, 2, 4, None)
    kwargs = config.unet_kwargs() | {"in_channels": 8}
    UNetSpatioTemporalConditionModel(**kwargs).save_pretrained(tmp_path / "unet")
    model = build_univdm(params, 25.0, _vae(), 4, None)
    assert model.config.reference_gate and model.config.parametrisation == "svd"
    gates = [p for n, p in model.named_parameters() if n.endswith("processor.gate")]
    assert gates and all(float(g.detach()) == 0 for g in gates)


def test_v_loss_is_the_epsilon_loss_over_abar_with_the_same_par_weights(monkeypatch):
    from pipeline.training.univdm_trainer import training_losses

    torch.manual_seed(0)
    config = _model().config
    config.parametrisation = "v"
    model = UniVDM(config).eval()
    # the model's own schedule (its abar turns v into epsilon)
    vae, scheduler = _vae().eval(), noise_scheduler(config.num_train_timesteps)
    item = TinyWindows()[3]
    batch = {k: v[None] for k, v in item.items()}  # one sample: one timestep, one abar
    step = 370  # the drawn timestep, fixed
    monkeypatch.setattr(torch, "randint", lambda *a, **k: torch.tensor([step]))
    with torch.no_grad():
        eps_losses = training_losses(model, scheduler, vae, batch, True,
                                     torch.Generator().manual_seed(7))  # fmt: skip
        v_losses = training_losses(model, scheduler, vae, batch, True,
                                   torch.Generator().manual_seed(7), loss_target="v")  # fmt: skip
    abar = float(scheduler.alphas_cumprod[step])
    # eps - eps_hat = sqrt(abar) (v - v_hat): the same weighted MSE divided by abar.
    for key in ("loss", "loss_par", "mse"):
        assert float(v_losses[key]) == pytest.approx(float(eps_losses[key]) / abar, rel=1e-4)


def test_v_loss_needs_a_model_that_predicts_v():
    with pytest.raises(ValueError, match="predicts v"):
        _params(loss_target="v")
    assert _params(loss_target="v", unet={"parametrisation": "v"}).loss_target == "v"


def _fresh_univdm(seed: int) -> UniVDM:
    unet = {"block_out_channels": [32, 32], "attention_head_dim": 8, "cross_attention_dim": 32,
            "addition_time_embed_dim": 8}  # fmt: skip
    params = _params(size=SIZE, frames=FRAMES, audio_context=1, unet=unet, seed=seed)
    vae = _vae()
    torch.seed()  # the global generator as a fresh process has it: seeded at random
    return build_univdm(params, 25.0, vae, 4, None)


def test_build_univdm_draws_its_weights_from_the_seed_alone():
    """torch seeds its global generator at random per process: the fresh UniVDM must depend on
    ``train_univdm.seed`` only, not on the generator's state before the build."""
    first = _fresh_univdm(0).state_dict()
    again = _fresh_univdm(0).state_dict()
    other = _fresh_univdm(1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_build_univdm_gives_the_same_weights_in_two_processes():
    """The stage's case: two fresh processes (each with torch's random initial seed) build the
    same model for one seed."""
    script = ("import hashlib\n"
              "from tests.training.test_univdm_trainer import _fresh_univdm\n"
              "h = hashlib.sha256()\n"
              "for k, v in sorted(_fresh_univdm(0).state_dict().items()):\n"
              "    h.update(k.encode()); h.update(v.numpy().tobytes())\n"
              "print(h.hexdigest())\n")  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                           text=True, check=True).stdout for _ in range(2)]  # fmt: skip
    assert runs[0] == runs[1]

"""Every stage that runs a network puts its models and tensors on the device it is given.

Each stage resolves ``runtime.device`` once (:func:`pipeline.models.device.resolve_device`; the
stages that do are checked against dvc.yaml in ``tests/orchestration/test_flows.py``) and hands
the device to the builders below. The tests give them the CPU explicitly, and the ``meta``
device: nothing lands on ``meta`` by default and an op that mixes a CPU tensor with a meta one
fails, so a builder that ignores its device, or a step that forgets to move its batch, fails
here. (On ``meta`` tensors have shapes but no values: the meta runs check shapes and devices, the
CPU runs the values.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from pipeline.builders.negatives import pair_plan_settings
from pipeline.config import (
    ClassifierParams,
    NegativesParams,
    TrainGestureAEParams,
    TrainSyncNetParams,
    TrainVaeParams,
)
from pipeline.data.windows import ClipRecord
from pipeline.evaluation.evaluate import FvdSettings, load_metric_models
from pipeline.inference import negatives as neg
from pipeline.inference.animator import AnimatorSettings
from pipeline.inference.generate import ModelFolders
from pipeline.models.classifier import SyncClassifier
from pipeline.models.gesture_ae import GestureAEConfig, GestureAutoencoder
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.syncnet import SyncNet
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.classifier_data import PairBatch
from pipeline.training.classifier_trainer import (
    batch_logits,
    build_classifier,
    classifier_losses,
    score_batches,
)
from pipeline.training.gesture_ae_trainer import build_gesture_ae
from pipeline.training.syncnet_trainer import build_syncnet
from pipeline.training.vae_trainer import fresh_vae
from tests.conftest import make_video

CPU, META = torch.device("cpu"), torch.device("meta")
SIZE, FRAMES, A = 16, 4, 3  # frame side, UniVDM window, audio features per frame
LATENT = SIZE // 2
SCHEDULER = noise_scheduler(100)


def _devices(*modules: torch.nn.Module) -> set[torch.device]:
    return {t.device for m in modules for t in [*m.parameters(), *m.buffers()]}


def _vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                         norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2,
                         sample_size=SIZE).eval()  # fmt: skip


def _univdm() -> UniVDM:
    torch.manual_seed(0)
    return UniVDM(UniVDMConfig(latent_size=LATENT, frames=FRAMES, audio_dim=A, audio_context=1,
                               block_out_channels=[32, 32], cross_attention_dim=32,
                               addition_time_embed_dim=8)).eval()  # fmt: skip


def _batch() -> PairBatch:
    """Two real windows and their two negatives, 3 frames each, on the CPU."""
    rng = np.random.default_rng(0)
    latents = torch.from_numpy(rng.normal(size=(4, 3, 4, LATENT, LATENT)).astype(np.float32))
    audio = torch.from_numpy(rng.normal(size=(4, 3, A)).astype(np.float32))
    boxes = np.tile(np.array([0.25, 0.25, 0.75, 0.75], np.float32), (4, 1))
    return PairBatch(latents, audio, boxes, torch.tensor([1.0, 1.0, 0.0, 0.0]))


# ---------------------------------------------------------------- train_vae, train_syncnet,
# ---------------------------------------------------------------- train_gesture_ae
@pytest.mark.parametrize("device", [CPU, META])
def test_the_trained_networks_are_built_on_the_device(device):
    vae = fresh_vae(TrainVaeParams(size=16, block_out_channels=[8, 8], norm_num_groups=4),
                    device)  # fmt: skip
    syncnet = build_syncnet(TrainSyncNetParams(size=32, width=0.1, embedding=8), device)
    gesture = build_gesture_ae(TrainGestureAEParams(window=8, hidden=8, feature_dim=4), device)
    assert _devices(vae) == _devices(syncnet) == _devices(gesture) == {device}
    if device == CPU:  # the seed still decides the weights, wherever they live
        again = build_syncnet(TrainSyncNetParams(size=32, width=0.1, embedding=8), CPU)
        for a, b in zip(syncnet.parameters(), again.parameters(), strict=True):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- negatives
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    out = []
    for i, n in enumerate((20, 16, 18)):
        path = make_video(folder / f"c{i}.mp4", seconds=n / 25, size=32, audio=None)
        audio = np.random.default_rng(i).normal(size=(n, A)).astype(np.float32)
        out.append(ClipRecord(f"c{i}", str(path), "", n, 32, np.zeros((n, 133, 3), np.float32),
                              audio))  # fmt: skip
    return out


def _rows(records):
    boxes = {r.clip_id: np.tile(np.array([0.25, 0.1, 0.75, 0.5], np.float32), (r.n_frames, 1))
             for r in records}  # fmt: skip
    params = NegativesParams(checkpoint_step=1, ddim_steps=2, lengths=[6], heldout_fraction=0.4,
                             batch_size=2, seed=5)  # fmt: skip
    plan = neg.plan_pairs(records, boxes, pair_plan_settings(params))
    return plan.set_index("window_id", drop=False).loc[neg.batches(plan, 2)[0]]


def _pair_generator(records, device, precision="fp32"):
    return neg.PairGenerator.build(_univdm(), _vae(), records, SIZE, 2,
                                   noise_scheduler(100, "scaled_linear"), None, device,
                                   precision)  # fmt: skip


def test_negatives_generate_on_the_meta_device(records):
    generator = _pair_generator(records, META)
    assert generator.device == META and _devices(generator.model, generator.vae) == {META}
    rows = _rows(records)
    for latents in (generator.positives(rows), generator.negatives(rows)):
        assert latents.device == META and latents.shape == (2, 6, 4, LATENT, LATENT)


def test_negatives_on_the_cpu_equal_the_default_and_bf16_stays_close(records):
    rows = _rows(records)
    on_cpu = _pair_generator(records, CPU).negatives(rows)
    schedule = noise_scheduler(100, "scaled_linear")
    default = neg.PairGenerator.build(_univdm(), _vae(), records, SIZE, 2, schedule).negatives(rows)
    assert on_cpu.device == CPU and torch.equal(on_cpu, default)
    bf16 = _pair_generator(records, CPU, "bf16").negatives(rows)
    assert bf16.dtype == torch.float32 and bool(torch.isfinite(bf16).all())
    gap = float((bf16 - on_cpu).abs().max())
    assert 0 < gap < 0.25 * float(on_cpu.abs().max()), gap  # autocast ran, and changed little


# ---------------------------------------------------------------- train_classifier
@pytest.mark.parametrize("device", [CPU, META])
def test_the_classifier_is_built_and_trained_on_the_device(device):
    rows = np.random.default_rng(1).normal(2.0, 3.0, size=(50, A)).astype(np.float32)
    model = build_classifier(_univdm(), ClassifierParams(width=32, layers=1, heads=4), 8, A, rows,
                             device)  # fmt: skip
    assert _devices(model) == {device}
    batch = _batch()  # on the CPU: the step moves it
    generator = torch.Generator(device).manual_seed(0) if device == CPU else None
    losses = classifier_losses(model, "face", SCHEDULER, batch, generator, 0.8, 0.25)
    logits = batch_logits(model, "nonface", SCHEDULER, batch, torch.tensor([5, 50, 5, 50]),
                          torch.randn(batch.latents.shape), 0.25)  # fmt: skip
    assert losses["loss"].device == device and losses["loss"].shape == ()
    assert logits.device == device and logits.shape == (4,)
    if device == CPU:
        torch.testing.assert_close(model.audio_mean, torch.from_numpy(rows.mean(0)))
        assert 0 < float(losses["loss"].detach()) < 10 and 0 <= float(losses["accuracy"]) <= 1
        scores, labels = score_batches(model, "nonface", SCHEDULER, [batch], (0, 50), 0.25, 3)
        assert scores.shape == (4,) and np.isfinite(scores).all()
        np.testing.assert_array_equal(labels, [1, 1, 0, 0])


# ---------------------------------------------------------------- infer, paha animate
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    _vae().save_pretrained(root / "vae", safe_serialization=True)
    model = _univdm()
    model.save(root / "univdm" / "final")
    for kind in ("face", "nonface"):
        clf = SyncClassifier.from_univdm(model, width=32, layers=1, heads=4, max_frames=16)
        clf.save(root / "classifier" / kind / "final")
    return root


def _animator(models_dir, device, precision="fp32"):
    settings = AnimatorSettings(size=SIZE, steps=2, num_train_timesteps=100, precision=precision)
    return ModelFolders.under(models_dir, "dg").load(settings, device)


def _inputs():
    reference = np.full((SIZE, SIZE, 3), 120, np.uint8)
    features = np.random.default_rng(0).normal(size=(6, A)).astype(np.float32)
    return reference, np.array([0.3, 0.1, 0.7, 0.5], np.float32), features


def test_inference_samples_on_the_meta_device(models_dir):
    animator = _animator(models_dir, META)
    assert animator.device == META
    assert _devices(animator.model, animator.vae, *animator.classifiers.values()) == {META}
    latents, segments, _ = animator.sample(*_inputs(), "dg", 1)  # guided: the classifiers too
    assert latents.device == META and latents.shape == (6, 4, LATENT, LATENT) and segments == 2


def test_inference_on_the_cpu_returns_cpu_results(models_dir):
    animator = _animator(models_dir, CPU)
    result = animator.generate(*_inputs(), "dg", 1)
    assert result.latents.device == CPU and result.frames.shape == (6, SIZE, SIZE, 3)
    bf16 = _animator(models_dir, CPU, "bf16").generate(*_inputs(), "dg", 1)
    gap = float((bf16.latents - result.latents).abs().max())
    assert bf16.latents.dtype == torch.float32
    assert 0 < gap < 0.25 * float(result.latents.abs().max()), gap


# ---------------------------------------------------------------- evaluate
def test_the_metric_networks_load_on_the_device(tmp_path):
    GestureAutoencoder(GestureAEConfig(window=8, hidden=8, feature_dim=4)).save(tmp_path / "gae")
    SyncNet(width=0.1, size=32, embedding=8).save(tmp_path / "sync")
    models = load_metric_models(tmp_path / "gae", tmp_path / "sync", "mediapipe", 0.4,
                                FvdSettings(i3d=None), None, META)  # fmt: skip
    assert models.device == META
    assert _devices(models.gesture_ae, models.syncnet) == {META}

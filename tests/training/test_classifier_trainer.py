"""PCE classifier training: region masking, pair batches, learning, held-out AUCs, resuming,
the data-parallel split of a step (in-process, and with 2 processes under DDP).

Run as a script (``torchrun --nproc_per_node 2 test_classifier_trainer.py OUT``), this file is
the worker of the 2-process test.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ClassifierParams
from pipeline.errors import ConfigError
from pipeline.models.classifier import SyncClassifier
from pipeline.models.device import make_accelerator
from pipeline.models.schedulers import add_noise, noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.classifier_data import PairData
from pipeline.training.classifier_trainer import (
    Shard,
    bucket_edges,
    build_classifier,
    classifier_input,
    classifier_losses,
    draw_pairs,
    evaluate,
    fit_correlation_head,
    rank_windows,
    region_multiplier,
    shard_batch,
    train_classifier,
)
from tests.distributed import run_two_ranks

CPU = torch.device("cpu")

LATENT, A = 8, 3
UNIVDM = UniVDMConfig(latent_channels=4, latent_size=LATENT, frames=3, audio_dim=A,
                      audio_context=1, block_out_channels=[32, 32], cross_attention_dim=32,
                      attention_head_dim=8, addition_time_embed_dim=8)  # fmt: skip
SCHEDULER = noise_scheduler(100)
BOX = [0.25, 0.25, 0.75, 0.75]


def _pairs(folder, n_clips=6, frames=20, seed=0):
    """Real latents are bright (+1) and generated ones dark (-1): a separable toy corpus."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    audio = {f"c{i}": rng.normal(size=(frames, A)).astype(np.float32) for i in range(n_clips)}
    rows = []
    for w in range(n_clips * 2):
        clip = f"c{w % n_clips}"
        length = 3 if w % 3 else 4
        start = int(rng.integers(frames - length - 1))
        paths = {}
        for kind, sign in (("positive", 1.0), ("negative", -1.0)):
            lat = rng.normal(size=(length, 4, LATENT, LATENT)).astype(np.float32) * 0.3 + sign
            paths[f"{kind}_path"] = str(folder / f"{w}.{kind}.npy")
            np.save(paths[f"{kind}_path"], lat)
        rows.append({"window_id": w, "split": "heldout" if w % n_clips < 2 else "train",
                     "clip_id": clip, "start": start, "length": length,
                     "audio_clip_id": f"c{(w + 1) % n_clips}", "audio_start": 1,
                     "ref_clip_id": clip, "ref_frame": 0, "seed": w,
                     "positive_face_box": np.array(BOX, np.float32),
                     "negative_face_box": np.array(BOX, np.float32), **paths,
                     "shard": "s"})  # fmt: skip
    return pd.DataFrame(rows), audio


def _model(**kw):
    torch.manual_seed(0)
    univdm = UniVDM(UNIVDM)
    return SyncClassifier.from_univdm(univdm, width=32, layers=1, heads=4, max_frames=8, **kw)


def _synced_pairs(folder, n_clips=6, frames=40, length=8):
    """Real latents whose every cell is the loudness (feature sum) of their own audio frame plus
    noise: the video moves with its audio, as a speaking mouth does."""
    index, audio = _pairs(folder, n_clips, frames)
    rng = np.random.default_rng(1)
    rows = []
    for w in range(n_clips * 3):
        clip = f"c{w % n_clips}"
        start = int(rng.integers(frames - length))
        loud = audio[clip][start : start + length].sum(1)
        lat = loud[:, None, None, None] + 0.3 * rng.normal(size=(length, 4, LATENT, LATENT))
        path = str(folder / f"synced{w}.npy")
        np.save(path, lat.astype(np.float32))
        rows.append(index.iloc[0].to_dict() | {
            "window_id": w, "split": "heldout" if w % n_clips < 2 else "train", "clip_id": clip,
            "start": start, "length": length, "positive_path": path, "negative_path": path,
        })  # fmt: skip
    return pd.DataFrame(rows), audio


def _params(**kw):
    base = {"width": 32, "layers": 1, "heads": 4, "steps": 12, "batch_size": 4, "lr": 1e-3,
            "warmup_steps": 0, "eval_every": 6, "save_every": 4, "keep_checkpoints": 5,
            "log_every": 1, "eval_buckets": 2, "shift_s": 0.2}  # fmt: skip
    return ClassifierParams(**(base | kw))


def test_region_multiplier_face_and_nonface():
    boxes = np.array([BOX, BOX])
    masked = torch.tensor([True, False])
    face = region_multiplier("face", boxes, 4, 0.0, masked)
    nonface = region_multiplier("nonface", boxes, 4, 0.0, masked)
    inside = torch.zeros(4, 4)
    inside[1:3, 1:3] = 1
    assert torch.equal(face[0], inside) and torch.equal(nonface[0], 1 - inside)
    assert torch.equal(face[1], torch.ones(4, 4)) and torch.equal(nonface[1], torch.ones(4, 4))
    with pytest.raises(ValueError, match="kind"):
        region_multiplier("hands", boxes, 4, 0.0, masked)


def test_classifier_input_noises_then_masks(tmp_path):
    index, audio = _pairs(tmp_path)
    data = PairData(index[index["split"] == "train"], audio)
    batch = data.training_batch(1, 4, 0)
    t = torch.tensor([0, 50, 99, 10])
    noise = torch.randn(batch.latents.shape)
    masked = torch.tensor([True, True, False, True])
    x = classifier_input("face", SCHEDULER, batch, t, noise, masked, 0.0)
    noisy = add_noise(SCHEDULER, batch.latents, noise, t)
    keep = torch.zeros(LATENT, LATENT, dtype=torch.bool)
    keep[2:6, 2:6] = True
    assert torch.equal(x[0][..., keep], noisy[0][..., keep])
    assert x[0][..., ~keep].abs().sum() == 0
    assert torch.equal(x[2], noisy[2])  # not masked
    y = classifier_input("nonface", SCHEDULER, batch, t, noise, masked, 0.0)
    assert y[0][..., keep].abs().sum() == 0 and torch.equal(y[0][..., ~keep], noisy[0][..., ~keep])


def test_gradient_of_the_score_wrt_the_latent_exists_and_is_finite(tmp_path):
    index, audio = _pairs(tmp_path)
    batch = PairData(index, audio).training_batch(3, 4, 0)
    model = _model().eval()
    latents = batch.latents.clone().requires_grad_(True)
    batch.latents = latents
    t = torch.full((4,), 30)
    x = classifier_input("face", SCHEDULER, batch, t, torch.zeros_like(latents),
                         torch.ones(4, dtype=torch.bool), 0.0)  # fmt: skip
    SyncClassifier.guidance_energy(model(x, t, batch.audio)).sum().backward()
    grad = latents.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    keep = torch.zeros(LATENT, LATENT, dtype=torch.bool)
    keep[2:6, 2:6] = True
    assert grad[..., ~keep].abs().sum() == 0  # the face classifier sees only the face


def test_bucket_edges():
    assert bucket_edges(1000, 4) == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert bucket_edges(10, 3) == [(0, 3), (3, 7), (7, 10)]


def test_pair_batches_hold_positives_then_their_negatives(tmp_path):
    index, audio = _pairs(tmp_path)
    data = PairData(index[index["split"] == "train"], audio)
    batch = data.training_batch(7, 4, 0)
    again = data.training_batch(7, 4, 0)
    assert torch.equal(batch.latents, again.latents)  # fixed by (seed, step)
    assert batch.labels.tolist() == [1, 1, 0, 0]
    assert batch.latents.shape[0] == 4 and batch.audio.shape[:2] == batch.latents.shape[:2]
    assert (batch.latents[:2].mean() > 0.5) and (batch.latents[2:].mean() < -0.5)
    rows = data.index[data.index["length"] == batch.latents.shape[1]]
    first = rows.iloc[0]
    pairs = data.pairs(rows.iloc[:1])
    np.testing.assert_array_equal(pairs.audio[0], audio[first.clip_id][first.start:first.start
                                                                       + first.length])  # fmt: skip
    np.testing.assert_array_equal(pairs.audio[1], audio[first.audio_clip_id][1 : 1 + first.length])
    # Every held-out pair appears once in the evaluation batches.
    held = PairData(index[index["split"] == "heldout"], audio)
    total = sum(len(b.labels) for b in held.evaluation_batches(4))
    assert total == 2 * len(held.index)


def test_mismatched_audio_is_shifted_or_from_another_clip(tmp_path):
    index, audio = _pairs(tmp_path)
    data = PairData(index, audio)
    batches = data.mismatched_batches(5, 4, 0)
    assert batches["shifted"] and batches["other_clip"]
    b = batches["shifted"][0]
    k = len(b.labels) // 2
    assert b.labels.tolist() == [1] * k + [0] * k
    assert torch.equal(b.latents[:k], b.latents[k:])  # the same real video both times
    row = data.index.loc[data.by_length[b.latents.shape[1]][0]]
    own = audio[row.clip_id][row.start : row.start + row.length]
    n = len(audio[row.clip_id])
    s = row.start + 5 if row.start + 5 + row.length <= n else row.start - 5
    np.testing.assert_array_equal(b.audio[0], own)
    np.testing.assert_array_equal(b.audio[k], audio[row.clip_id][s : s + row.length])


def test_training_separates_real_from_generated_and_resumes_exactly(tmp_path):
    index, audio = _pairs(tmp_path / "pairs")
    train = PairData(index[index["split"] == "train"], audio)
    held = PairData(index[index["split"] == "heldout"], audio)
    model = _model()
    result = train_classifier(model, "nonface", train, held, SCHEDULER, _params(), tmp_path / "a",
                              "fp", fps=25.0)  # fmt: skip
    first = np.mean([r["loss"] for r in result.history[:3]])
    last = np.mean([r["loss"] for r in result.history[-3:]])
    assert last < first
    figures = result.evaluations[-1]
    assert figures["heldout_auc_t000_049"] > 0.9  # low noise: real vs generated is easy here
    assert set(figures) >= {"heldout_auc", "heldout_loss", "heldout_accuracy",
                            "shifted_audio_auc", "other_clip_audio_auc"}  # fmt: skip
    # Stop at step 4, then resume to 12: the same weights as the uninterrupted run.
    part = _model()
    train_classifier(part, "nonface", train, held, SCHEDULER, _params(steps=4), tmp_path / "b",
                     "fp", fps=25.0)  # fmt: skip
    resumed = _model()
    again = train_classifier(resumed, "nonface", train, held, SCHEDULER, _params(), tmp_path / "b",
                             "fp", fps=25.0)  # fmt: skip
    assert again.first_step == 4
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    # The evaluation is deterministic.
    assert evaluate(model, "nonface", SCHEDULER, held, _params(), 25.0) == evaluate(
        model, "nonface", SCHEDULER, held, _params(), 25.0
    )


def _mismatch_auc(model, data):
    from pipeline.metrics.roc import roc_auc

    logits, labels = [], []
    for batch in data.mismatched_batches(6, 8, 0)["shifted"]:
        with torch.no_grad():
            logits.append(model.correlation_logit(batch.latents, batch.audio).numpy())
        labels.append(batch.labels.numpy())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    return roc_auc(logits[labels == 1], logits[labels == 0])


def test_correlation_fit_hears_shifted_audio_and_changes_only_the_head(tmp_path):
    index, audio = _synced_pairs(tmp_path)
    train = PairData(index[index["split"] == "train"], audio)
    held = PairData(index[index["split"] == "heldout"], audio)
    params = _params(sync_channels=2, sync_grid=2, sync_fit_steps=150, sync_fit_batch_size=8,
                     sync_fit_lr=3e-3, mask_prob=0.0)  # fmt: skip
    model = _model(sync_channels=2, sync_grid=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    untrained = _mismatch_auc(model, held)
    fit = fit_correlation_head(model, "nonface", SCHEDULER, train, params, fps=25.0)
    assert fit["sync_fit_loss_last100"] < fit["sync_fit_loss_first100"]
    assert _mismatch_auc(model, held) > max(0.9, untrained)  # held-out windows, shifted audio
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("correlation.") for k in changed)
    assert all(p.grad is None for p in model.parameters())
    again = _model(sync_channels=2, sync_grid=2)
    fit_correlation_head(again, "nonface", SCHEDULER, train, params, fps=25.0)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)  # deterministic in the seed


def test_correlation_fit_runs_once_and_a_resumed_run_matches(tmp_path):
    index, audio = _synced_pairs(tmp_path / "pairs")
    train = PairData(index[index["split"] == "train"], audio)
    held = PairData(index[index["split"] == "heldout"], audio)
    kw = {"sync_channels": 2, "sync_grid": 2}
    params = _params(sync_fit_steps=20, sync_fit_batch_size=8, **kw)
    model = _model(**kw)
    result = train_classifier(model, "nonface", train, held, SCHEDULER, params, tmp_path / "a",
                              "fp", fps=25.0)  # fmt: skip
    assert {"sync_fit_loss_first100", "sync_fit_loss_last100"} <= set(result.evaluations[-1])
    part = _model(**kw)
    part_params = _params(steps=4, sync_fit_steps=20, sync_fit_batch_size=8, **kw)
    train_classifier(part, "nonface", train, held, SCHEDULER, part_params, tmp_path / "b", "fp",
                     fps=25.0)  # fmt: skip
    resumed = _model(**kw)  # resumes at step 4: its head comes from the checkpoint, not a refit
    again = train_classifier(resumed, "nonface", train, held, SCHEDULER, params, tmp_path / "b",
                             "fp", fps=25.0)  # fmt: skip
    assert again.first_step == 4
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_real_negatives_are_the_real_window_heard_with_audio_from_elsewhere(tmp_path):
    index, audio = _pairs(tmp_path)
    data = PairData(index[index["split"] == "train"], audio)
    plain = data.training_batch(5, 8, 0)
    assert torch.equal(plain.latents, data.training_batch(5, 8, 0, 0.0, 3).latents)
    mixed = data.training_batch(5, 8, 0, 1.0, 3)
    k = 4
    # The positives are untouched; every negative is now its own real window ...
    assert torch.equal(mixed.latents[:k], plain.latents[:k])
    assert torch.equal(mixed.latents[k:], plain.latents[:k])
    assert mixed.labels.tolist() == [1] * k + [0] * k
    np.testing.assert_array_equal(mixed.face_boxes[k:], plain.face_boxes[:k])
    # ... heard with audio that is not its own: at least min_shift frames off, or another clip.
    for j in range(k):
        own, heard = mixed.audio[j].numpy(), mixed.audio[k + j].numpy()
        length = own.shape[0]
        matches = [(c, s) for c, a in audio.items() for s in range(len(a) - length + 1)
                   if np.array_equal(a[s : s + length], heard)]  # fmt: skip
        assert len(matches) == 1
        clip, start = matches[0]
        row_clip = next(c for c, a in audio.items() for s in range(len(a) - length + 1)
                        if np.array_equal(a[s : s + length], own))  # fmt: skip
        own_start = next(s for s in range(len(audio[row_clip]) - length + 1)
                         if np.array_equal(audio[row_clip][s : s + length], own))  # fmt: skip
        assert clip != row_clip or abs(start - own_start) >= 3


def test_away_audio_falls_back_to_another_clip_when_the_own_clip_is_too_short(tmp_path):
    index, audio = _pairs(tmp_path)
    data = PairData(index, audio)
    rng = np.random.default_rng(0)
    clip, start = data.away_audio("c0", 0, 4, 100, rng)
    assert clip != "c0" and 0 <= start <= len(audio[clip]) - 4
    clip, start = data.away_audio("c0", 0, 4, 5, rng)
    assert clip == "c0" and start >= 5


# ---------------------------------------------------------------- data parallel
def _splits(tmp_path):
    index, audio = _pairs(tmp_path)
    return (PairData(index[index["split"] == "train"], audio),
            PairData(index[index["split"] == "heldout"], audio))  # fmt: skip


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0,
                  encoder_atol: float | None = None) -> None:  # fmt: skip
    """Equal weights; ``encoder_atol``: the UNet encoder's to that tolerance instead."""
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        tol = encoder_atol if encoder_atol is not None and name.startswith("encoder.") else atol
        torch.testing.assert_close(x, y, atol=tol, rtol=0, msg=name)


def _ddp_close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """2-rank and 1-process weights after 12 AdamW steps at lr 1e-3: the transformer, head and
    projections to 5e-5. Some encoder gradients are zero in exact arithmetic (a conv bias
    before a one-channel-per-group GroupNorm), so their float noise, which the summation order
    changes, is all Adam normalises: each step may move such a weight by up to lr either way."""
    _same_weights(a, b, atol=5e-5, encoder_atol=2e-3)


@pytest.fixture
def fresh_accelerate():
    """accelerate's process-wide state reset around the test (its mixed precision is fixed
    once per process otherwise)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_the_ranks_parts_of_a_step_make_the_single_process_batch(tmp_path):
    data, _ = _splits(tmp_path)
    replaced = 0
    for prob in (0.0, 0.5, 1.0):
        for step in range(1, 6):
            whole = data.training_batch(step, 8, 0, prob, 3)
            draw = draw_pairs(data, step, 8, 0, prob, 3)
            replaced += len(draw.away)
            one = shard_batch(data, draw, rank_windows(4, 0, 1))
            for a, b in ((one.latents, whole.latents), (one.audio, whole.audio),
                         (one.labels, whole.labels)):  # fmt: skip
                assert torch.equal(a, b)
            np.testing.assert_array_equal(one.face_boxes, whole.face_boxes)
            # Three ranks: windows 0-1, 2, 3; positives then negatives of each part.
            assert [rank_windows(4, r, 3).tolist() for r in range(3)] == [[0, 1], [2], [3]]
            parts = [shard_batch(data, draw, rank_windows(4, r, 3)) for r in range(3)]
            half = [len(p.labels) // 2 for p in parts]
            for field in ("latents", "audio", "labels"):
                got = torch.cat([getattr(p, field)[:h] for p, h in zip(parts, half, strict=True)]
                                + [getattr(p, field)[h:] for p, h in zip(parts, half,
                                                                         strict=True)])  # fmt: skip
                assert torch.equal(got, getattr(whole, field)), field
    assert 0 < replaced < 2 * 5 * 4  # prob 0.5 replaced some negatives, prob 0 none
    with pytest.raises(ConfigError, match="2 windows a step cannot be split over 3"):
        rank_windows(2, 0, 3)


def test_shard_losses_average_to_the_whole_batch_loss_and_gradient(tmp_path):
    """DDP averages the ranks' gradients: the weighted shard losses average to the BCE over
    the whole step, the same t, noise and masks per item, and so do their gradients."""
    data, _ = _splits(tmp_path)
    draw = draw_pairs(data, 3, 8, 0, 0.5, 3)
    model = _model()

    def run(batch, shard):
        model.zero_grad()
        generator = torch.Generator().manual_seed(11)
        losses = classifier_losses(model, "nonface", SCHEDULER, batch, generator, 0.5, 0.25,
                                   shard)  # fmt: skip
        losses["loss"].backward()
        grads = [p.grad.clone() for p in model.parameters()]
        return float(losses["loss"].detach()), float(losses["accuracy"]), grads

    whole_loss, whole_acc, whole_grads = run(shard_batch(data, draw, np.arange(4)), None)
    parts = []
    for rank in range(3):
        windows = rank_windows(4, rank, 3)
        parts.append(run(shard_batch(data, draw, windows), Shard.of_windows(windows, 8, 3)))
    assert Shard.of_windows(np.array([0, 1]), 8, 3).weight == 1.5
    assert Shard.of_windows(np.array([0, 1]), 8, 2).weight == 1.0
    assert np.mean([p[0] for p in parts]) == pytest.approx(whole_loss, abs=1e-6)
    assert np.mean([p[1] for p in parts]) == pytest.approx(whole_acc, abs=1e-6)
    for i, grad in enumerate(whole_grads):
        mean = sum(p[2][i] for p in parts) / 3
        torch.testing.assert_close(mean, grad, atol=1e-6, rtol=1e-4)


def test_under_accelerate_one_process_trains_as_the_plain_loop_and_resumes_exactly(
    tmp_path, fresh_accelerate
):
    train, held = _splits(tmp_path / "pairs")
    params = _params(steps=8, eval_every=8)
    plain = _model()
    reference = train_classifier(plain, "face", train, held, SCHEDULER, params, tmp_path / "p",
                                 "fp", fps=25.0)  # fmt: skip
    model = _model()
    result = train_classifier(model, "face", train, held, SCHEDULER, params, tmp_path / "a", "fp",
                              fps=25.0, accelerator=make_accelerator(CPU))  # fmt: skip
    _same_weights(model, plain)
    assert [r["loss"] for r in result.history] == [r["loss"] for r in reference.history]
    assert result.evaluations == reference.evaluations
    # Interrupted at step 4, resumed by a new run: the uninterrupted weights.
    part = _model()
    train_classifier(part, "face", train, held, SCHEDULER, _params(steps=4, eval_every=8),
                     tmp_path / "b", "fp", fps=25.0, accelerator=make_accelerator(CPU))  # fmt: skip
    resumed = _model()
    again = train_classifier(resumed, "face", train, held, SCHEDULER, params, tmp_path / "b",
                             "fp", fps=25.0, accelerator=make_accelerator(CPU))  # fmt: skip
    assert again.first_step == 4
    _same_weights(resumed, model)


def test_bf16_under_accelerate_stays_close_to_fp32_and_resumes_exactly(tmp_path,
                                                                     fresh_accelerate):  # fmt: skip
    train, held = _splits(tmp_path / "pairs")
    params = _params(steps=4, save_every=2, eval_every=4)
    fp32 = _model()
    reference = train_classifier(fp32, "nonface", train, held, SCHEDULER, params,
                                 tmp_path / "fp32", "fp", fps=25.0)  # fmt: skip
    bf16 = make_accelerator(CPU, mixed_precision="bf16")
    assert bf16.mixed_precision == "bf16"
    model = _model()
    result = train_classifier(model, "nonface", train, held, SCHEDULER, params, tmp_path / "a",
                              "fp", fps=25.0, accelerator=bf16)  # fmt: skip
    losses = np.array([r["loss"] for r in result.history])
    expected = np.array([r["loss"] for r in reference.history])
    assert not np.array_equal(losses, expected)  # autocast ran
    np.testing.assert_allclose(losses, expected, rtol=0.05)
    part = _model()
    train_classifier(part, "nonface", train, held, SCHEDULER, _params(steps=2, eval_every=4),
                     tmp_path / "b", "fp", fps=25.0, accelerator=bf16)  # fmt: skip
    resumed = _model()
    again = train_classifier(resumed, "nonface", train, held, SCHEDULER, params, tmp_path / "b",
                             "fp", fps=25.0, accelerator=bf16)  # fmt: skip
    assert again.first_step == 2
    _same_weights(resumed, model)


def test_two_processes_under_ddp_train_as_one(tmp_path):
    """DDP on the CPU (gloo): 2 ranks, one window each a step, train the weights one process
    trains (up to float summation order); rank 0 alone writes checkpoints and logs the ranks'
    mean loss; the 2-rank checkpoint of step 4 resumes in one process to the same weights."""
    out = tmp_path / "ddp"
    out.mkdir()
    done = run_two_ranks(__file__, out, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    train, held = _splits(tmp_path / "pairs")
    single = _model()
    reference = train_classifier(single, "nonface", train, held, SCHEDULER, _params(),
                                 tmp_path / "single", "fp", fps=25.0)  # fmt: skip
    ddp = _model()
    ddp.load_state_dict(torch.load(out / "whole.pt"))
    _ddp_close(ddp, single)
    history = json.loads((out / "history.json").read_text())
    np.testing.assert_allclose([r["loss"] for r in history],
                               [r["loss"] for r in reference.history], atol=1e-5)  # fmt: skip
    np.testing.assert_allclose([r["accuracy"] for r in history],
                               [r["accuracy"] for r in reference.history], atol=1e-6)  # fmt: skip
    logged = json.loads((out / "logged.json").read_text())
    assert [v for _, name, v in logged if name == "loss"] == [r["loss"] for r in history]
    saved = sorted(p.name for p in (out / "whole").iterdir())
    assert saved == ["step-000000004", "step-000000008", "step-000000012"]  # rank 0's, once
    resumed = _model()
    again = train_classifier(resumed, "nonface", train, held, SCHEDULER, _params(), out / "part",
                             "fp", fps=25.0)  # fmt: skip
    assert again.first_step == 4
    np.testing.assert_allclose([r["loss"] for r in again.history],
                               [r["loss"] for r in reference.history[4:]], atol=1e-5)  # fmt: skip
    _ddp_close(resumed, single)


def _ddp_worker(out: Path) -> None:
    """The 2-process test's rank: trains to step 4 (``part``), then to 12 (``whole``)."""
    from tests.conftest import FakeLive

    accelerator = make_accelerator(CPU)
    assert accelerator.num_processes == 2
    rank = accelerator.process_index
    train, held = _splits(out / f"pairs-{rank}")  # the same pairs, each rank its own files
    train_classifier(_model(), "nonface", train, held, SCHEDULER, _params(steps=4), out / "part",
                     "fp", fps=25.0, accelerator=accelerator)  # fmt: skip
    live = FakeLive() if accelerator.is_main_process else None
    model = _model()
    result = train_classifier(model, "nonface", train, held, SCHEDULER, _params(), out / "whole",
                              "fp", fps=25.0, logger=live, accelerator=accelerator)  # fmt: skip
    if accelerator.is_main_process:
        torch.save(model.state_dict(), out / "whole.pt")
        (out / "history.json").write_text(json.dumps(result.history))
        (out / "logged.json").write_text(json.dumps(live.rows))
    accelerator.wait_for_everyone()


def test_build_classifier_draws_its_new_layers_from_the_seed_alone():
    """The layers not copied from UniVDM (transformer, heads, correlation read-outs) come from
    ``train_classifier.<kind>.seed`` only: torch's own initial seed is random per process."""
    torch.manual_seed(0)
    univdm = UniVDM(UNIVDM)
    audio_rows = np.random.default_rng(0).normal(size=(20, A)).astype(np.float32)

    def build(seed):
        params = _params(seed=seed, sync_channels=2, sync_grid=2)
        return build_classifier(univdm, params, 8, A, audio_rows, CPU).state_dict()

    torch.seed()  # the global generator as a fresh process has it: seeded at random
    first = build(0)
    torch.seed()
    again, other = build(0), build(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    differ = {k for k in first if not torch.equal(first[k], other[k])}
    assert differ and not any(k.startswith("encoder.") for k in differ)  # copied weights agree


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))

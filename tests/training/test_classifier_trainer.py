"""PCE classifier training: region masking, pair batches, learning, held-out AUCs, resuming."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ClassifierParams
from pipeline.models.classifier import SyncClassifier
from pipeline.models.schedulers import add_noise, noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.classifier_data import PairData
from pipeline.training.classifier_trainer import (
    bucket_edges,
    classifier_input,
    evaluate,
    region_multiplier,
    train_classifier,
)

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


def _model():
    torch.manual_seed(0)
    univdm = UniVDM(UNIVDM)
    return SyncClassifier.from_univdm(univdm, width=32, layers=1, heads=4, max_frames=8)


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

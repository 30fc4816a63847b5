"""PCE pairs: window plan, held-out pools, shards that equal the single run, atomic shards."""

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import AutoencoderKL

from pipeline.builders.negatives import pair_plan_settings
from pipeline.config import NegativesParams
from pipeline.data.windows import ClipRecord
from pipeline.inference import negatives as neg
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from tests.conftest import make_video

SIZE, FRAMES = 16, 4


def _records(folder, n=5, frames=(30, 25, 20, 30, 22)):
    records = []
    for i in range(n):
        path = make_video(folder / f"c{i}.mp4", seconds=frames[i] / 25, size=32, audio=None)
        audio = np.random.default_rng(i).normal(size=(frames[i], 3)).astype(np.float32)
        records.append(ClipRecord(f"c{i}", str(path), "", frames[i], 32,
                                  np.zeros((frames[i], 133, 3), np.float32), audio))  # fmt: skip
    return records


def _boxes(records):
    boxes = {}
    for r in records:
        b = np.tile(np.array([0.25, 0.1, 0.75, 0.5], np.float32), (r.n_frames, 1))
        b[::3] = np.nan  # some frames without a face
        boxes[r.clip_id] = b
    return boxes


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return _records(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def generator(records):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=SIZE).eval()  # fmt: skip
    model = UniVDM(UniVDMConfig(latent_size=SIZE // 2, frames=FRAMES, audio_dim=3,
                                audio_context=1, block_out_channels=[32, 32],
                                cross_attention_dim=32,
                                addition_time_embed_dim=8)).eval()  # fmt: skip
    scheduler = noise_scheduler(100)
    return neg.PairGenerator(model, vae, scheduler, {r.clip_id: r for r in records}, SIZE, 2)


PARAMS = NegativesParams(checkpoint_step=1, ddim_steps=2, lengths=[4, 6], heldout_fraction=0.4,
                         batch_size=3, seed=5)  # fmt: skip


def _plan(**changes) -> neg.PairPlanSettings:
    return pair_plan_settings(PARAMS.model_copy(update=changes))


def test_clip_windows_fit_and_do_not_overlap():
    windows = neg.clip_windows("a", 20, [4, 6], None, 0)
    assert windows == neg.clip_windows("a", 20, [4, 6], None, 0)  # deterministic
    ends = 0
    for start, length in windows:
        assert start == ends and length in (4, 6) and start + length <= 20
        ends = start + length
    assert 20 - ends < 4  # stops only when no length fits
    strided = neg.clip_windows("a", 20, [4], 2, 0)
    assert [s for s, _ in strided] == list(range(0, 17, 2))


def test_plan_draws_negatives_within_the_windows_split(records):
    plan = neg.plan_pairs(records, _boxes(records), _plan())
    again = neg.plan_pairs(records, _boxes(records), _plan())
    pd.testing.assert_frame_equal(
        plan.drop(columns=["positive_face_box", "negative_face_box"]),
        again.drop(columns=["positive_face_box", "negative_face_box"]),
    )
    held = neg.heldout_clips([r.clip_id for r in records], 0.4, 5)
    assert len(held) == 2
    n_frames = {r.clip_id: r.n_frames for r in records}
    for row in plan.itertuples():
        assert (row.clip_id in held) == (row.split == "heldout")
        assert (row.audio_clip_id in held) == (row.split == "heldout")
        assert (row.ref_clip_id in held) == (row.split == "heldout")
        assert row.audio_start + row.length <= n_frames[row.audio_clip_id]
        assert 0 <= row.ref_frame < n_frames[row.ref_clip_id]
        assert np.isfinite(row.positive_face_box).all() and np.isfinite(row.negative_face_box).all()
    assert plan["seed"].is_unique and list(plan["window_id"]) == list(range(len(plan)))
    capped = neg.plan_pairs(records, _boxes(records), _plan(max_windows=5))
    assert len(capped) == 5


def test_plan_without_augmentation_has_one_length_and_first_frame_references(records):
    plain = neg.plan_pairs(records, _boxes(records), _plan(augment=False))
    augmented = neg.plan_pairs(records, _boxes(records), _plan())
    assert set(plain["length"]) == {PARAMS.lengths[0]} and (plain["ref_frame"] == 0).all()
    assert len(set(augmented["length"])) > 1 and (augmented["ref_frame"] > 0).any()


def test_plan_rejects_a_clip_without_any_face(records):
    boxes = _boxes(records)
    boxes["c2"][:] = np.nan
    with pytest.raises(ValueError, match="c2: no face"):
        neg.plan_pairs(records, boxes, _plan())


def test_shards_partition_equal_length_batches(records):
    plan = neg.plan_pairs(records, _boxes(records), _plan())
    lengths = plan.set_index("window_id")["length"]
    all_batches = neg.batches(plan, 3)
    assert sorted(i for b in all_batches for i in b) == list(plan["window_id"])
    assert all(len(set(lengths[b])) == 1 and len(b) <= 3 for b in all_batches)
    shards = [neg.shard_batches(plan, 3, i, 2) for i in range(2)]
    assert sorted(map(tuple, shards[0] + shards[1])) == sorted(map(tuple, all_batches))


def _generate(generator, plan, out, shards):
    fp = neg.plan_fingerprint(plan, {"test": 1})
    for i in range(shards):
        neg.generate_shard(generator, plan, PARAMS.batch_size, PARAMS.dtype, out, i, shards, fp)
    return neg.merge_shards(out, shards, fp, len(plan))


def test_sharded_negatives_equal_unsharded(generator, records, tmp_path):
    plan = neg.plan_pairs(records, _boxes(records), _plan())
    one = _generate(generator, plan, tmp_path / "one", 1)
    two = _generate(generator, plan, tmp_path / "two", 2)
    assert len(one) == len(plan) and set(two["shard"]) == {"shard-000-of-002", "shard-001-of-002"}
    same = ["window_id", "split", "clip_id", "start", "length", "audio_clip_id", "audio_start",
            "ref_clip_id", "ref_frame", "seed"]  # fmt: skip
    pd.testing.assert_frame_equal(one[same], two[same])
    for a, b, length in zip(one["negative_path"], two["negative_path"], one["length"], strict=True):
        x, y = np.load(a), np.load(b)
        assert x.shape == (length, 4, SIZE // 2, SIZE // 2) and np.array_equal(x, y)
    for a, b in zip(one["positive_path"], two["positive_path"], strict=True):
        assert np.array_equal(np.load(a), np.load(b))
    # A 6-frame window with 4-frame segments is two chained segments: still finite latents.
    long = one[one["length"] == 6].iloc[0]
    assert np.isfinite(np.load(long["negative_path"])).all()
    # Real latents really are the VAE's encoding of the window's frames.
    assert not np.array_equal(np.load(one["positive_path"][0]), np.load(one["negative_path"][0]))
    strip = cv2.imread(str(neg.write_preview_strip(one, generator.vae, tmp_path / "p.png", 2)))
    assert strip is not None and strip.shape[1] >= 2 * SIZE, "two pairs, real over generated"


def test_pair_generator_is_built_from_plain_settings(generator, records):
    schedule = noise_scheduler(100, "linear")
    built = neg.PairGenerator.build(generator.model, generator.vae, records, SIZE, 2, schedule)
    assert built.records.keys() == generator.records.keys() and built.image_encoder is None
    assert built.train_scheduler is schedule and built.device == torch.device("cpu")


def test_an_interrupted_shard_leaves_nothing_and_is_redone(generator, records, tmp_path,
                                                           monkeypatch):  # fmt: skip
    plan = neg.plan_pairs(records, _boxes(records), _plan())
    fp = neg.plan_fingerprint(plan, {"test": 1})
    calls = {"n": 0}
    real = neg.PairGenerator.negatives

    def failing(self, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a worker killed half-way through the shard
        return real(self, rows)

    monkeypatch.setattr(neg.PairGenerator, "negatives", failing)
    with pytest.raises(KeyboardInterrupt):
        neg.generate_shard(generator, plan, PARAMS.batch_size, PARAMS.dtype, tmp_path, 0, 1, fp)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())
    with pytest.raises(ValueError, match="not complete"):
        neg.merge_shards(tmp_path, 1, fp, len(plan))
    monkeypatch.setattr(neg.PairGenerator, "negatives", real)
    neg.generate_shard(generator, plan, PARAMS.batch_size, PARAMS.dtype, tmp_path, 0, 1, fp)
    # A complete shard of the same plan is kept, not recomputed.
    monkeypatch.setattr(neg.PairGenerator, "negatives", failing)
    calls["n"] = 1
    neg.generate_shard(generator, plan, PARAMS.batch_size, PARAMS.dtype, tmp_path, 0, 1, fp)
    index = neg.merge_shards(tmp_path, 1, fp, len(plan))
    assert len(index) == len(plan)
    # Another plan (e.g. other weights) is not taken for this one.
    with pytest.raises(ValueError, match="not complete"):
        neg.merge_shards(tmp_path, 1, "otherplan", len(plan))

"""The infer stage's work on tiny models: shards equal one run, and the merge refuses shards of
another plan or missing ones by name."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from pipeline.data.windows import ClipRecord
from pipeline.inference import generate as gen
from pipeline.inference.animator import AnimatorSettings
from pipeline.io import tables
from pipeline.io.shards import ShardError, shard_dir
from pipeline.models.univdm import UniVDM, UniVDMConfig
from tests.conftest import make_video

SIZE, FRAMES, MELS = 16, 4, 3
SETTINGS = AnimatorSettings(size=SIZE, fps=25.0, steps=2, num_train_timesteps=100)
BOX = np.array([0.3, 0.1, 0.7, 0.5], np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=SIZE)  # fmt: skip
    vae.save_pretrained(root / "vae", safe_serialization=True)
    model = UniVDM(UniVDMConfig(latent_size=SIZE // 2, frames=FRAMES, audio_dim=MELS,
                                audio_context=1, block_out_channels=[32, 32],
                                cross_attention_dim=32, addition_time_embed_dim=8))  # fmt: skip
    model.save(root / "univdm" / "final")
    return gen.ModelFolders.under(root, "none")


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    records = []
    for i, n in enumerate((6, 5, 7)):
        path = str(make_video(folder / f"c{i}.mp4", seconds=n / 25, size=32))
        audio = np.random.default_rng(i).normal(size=(n, MELS)).astype(np.float32)
        records.append(ClipRecord(f"c{i}", path, path, n, 32,
                                  np.zeros((n, 133, 3), np.float32), audio))  # fmt: skip
    return gen.InferPlan(records, {r.clip_id: BOX for r in records}, "none", seed=3)


def _run(plan, models, out, shards, fingerprint):
    for i in range(shards):
        gen.generate_shard(plan, lambda: models.load(SETTINGS), out, i, shards, fingerprint)
    return gen.merge_generated(plan, out, shards, fingerprint)


def test_two_shards_equal_one_run_and_complete_shards_are_kept(plan, models, tmp_path):
    fingerprint = plan.fingerprint(SETTINGS, models.digests())
    one = _run(plan, models, tmp_path / "one", 1, fingerprint)
    two = _run(plan, models, tmp_path / "two", 2, fingerprint)
    assert list(one["clip_id"]) == list(two["clip_id"]) == ["c0", "c1", "c2"]  # clip order
    assert (one["status"] == "ok").all(), one["reason"].tolist()
    for a, b, n in zip(one["latents_path"], two["latents_path"], one["n_frames"], strict=True):
        x, y = np.load(a), np.load(b)
        assert x.shape == (n, 4, SIZE // 2, SIZE // 2) and np.array_equal(x, y)
    assert (tmp_path / "two" / "index.parquet").exists()

    def no_models():
        raise AssertionError("a complete shard must be kept, not regenerated")

    for i in range(2):  # a restarted worker: nothing is loaded or generated again
        gen.generate_shard(plan, no_models, tmp_path / "two", i, 2, fingerprint)


def test_merge_refuses_a_shard_of_another_plan_and_a_missing_shard(plan, models, tmp_path):
    digests = models.digests()
    fingerprint = plan.fingerprint(SETTINGS, digests)
    other = gen.InferPlan(plan.records, plan.face_boxes, plan.mode, seed=4)  # other noise
    other_fingerprint = other.fingerprint(SETTINGS, digests)
    assert other_fingerprint != fingerprint
    assert plan.fingerprint(AnimatorSettings(size=SIZE, steps=3), digests) != fingerprint
    assert plan.fingerprint(SETTINGS, digests | {"univdm": "retrained"}) != fingerprint

    def load():
        return models.load(SETTINGS)

    gen.generate_shard(plan, load, tmp_path, 0, 2, fingerprint)
    with pytest.raises(ShardError, match="1 of 2 shards not complete") as missing:
        gen.merge_generated(plan, tmp_path, 2, fingerprint)
    assert f"{shard_dir(tmp_path, 1, 2)} (missing)" in str(missing.value)
    gen.generate_shard(other, load, tmp_path, 1, 2, other_fingerprint)
    with pytest.raises(ShardError, match="infer none: 1 of 2 shards") as stale:
        gen.merge_generated(plan, tmp_path, 2, fingerprint)
    assert f"{shard_dir(tmp_path, 1, 2)} (other plan)" in str(stale.value)
    assert not (tmp_path / "index.parquet").exists()
    gen.generate_shard(plan, load, tmp_path, 1, 2, fingerprint)  # redone for this plan
    assert len(gen.merge_generated(plan, tmp_path, 2, fingerprint)) == 3


def test_a_clip_that_cannot_be_generated_gets_a_row_with_the_reason(plan, models, tmp_path):
    broken = ClipRecord("c9", str(tmp_path / "gone.mp4"), "", 6, 32,
                        np.zeros((6, 133, 3), np.float32), plan.records[0].audio)  # fmt: skip
    bad = gen.InferPlan([broken], {"c9": BOX}, "none", seed=3)
    fingerprint = bad.fingerprint(SETTINGS, models.digests())
    gen.generate_shard(bad, lambda: models.load(SETTINGS), tmp_path, 0, 1, fingerprint)
    index = gen.merge_generated(bad, tmp_path, 1, fingerprint)
    row = index.iloc[0]
    assert row["status"] == "failed" and "gone.mp4" in row["reason"], row["reason"]
    assert tables.GENERATED.names == list(index.columns)


def test_lossless_plan_writes_rgb_video_and_is_another_plan(plan, models, tmp_path):
    import dataclasses

    import ffmpeg

    lossless = dataclasses.replace(plan, records=plan.records[:1], lossless_video=True)
    lossy = dataclasses.replace(lossless, lossless_video=False)
    assert lossless.fingerprint(SETTINGS, {}) != lossy.fingerprint(SETTINGS, {})
    codecs = {}
    for name, p in (("lossless", lossless), ("lossy", lossy)):
        table = _run(p, models, tmp_path / name, 1, p.fingerprint(SETTINGS, {}))
        stream = ffmpeg.probe(table["video_path"][0], select_streams="v")["streams"][0]
        codecs[name] = (stream["codec_name"], stream["pix_fmt"])
    assert codecs == {"lossless": ("h264", "gbrp"), "lossy": ("h264", "yuv420p")}

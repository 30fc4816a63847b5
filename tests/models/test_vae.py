"""The frame VAE: loading, building, encode/decode helpers, the scaling factor and the stage
(training itself: tests/training/test_vae_trainer.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml

from pipeline.config import TrainVaeParams
from pipeline.data.images import frames_to_images
from pipeline.errors import InputError, MissingInputError
from pipeline.io import tables
from pipeline.models.vae import (
    build_vae,
    decode_latents,
    encode_frames,
    load_vae,
    resolve_vae,
    sample_training_frames,
    set_scaling_factor,
    vae_downsample_factor,
)
from pipeline.training.checkpoint_store import list_checkpoints

# Small enough that a training step takes milliseconds.
TINY = {"size": 16, "block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 2,
        "norm_num_groups": 4, "steps": 100, "batch_size": 8, "lr": 3e-3,
        "eval_frames": 4}  # fmt: skip


def tiny_params(**overrides) -> TrainVaeParams:
    return TrainVaeParams(**{**TINY, **overrides})


def tiny_vae(**overrides):
    """``build_vae`` with the architecture of ``tiny_params(**overrides)``."""
    p = tiny_params(**overrides)
    return build_vae(p.size, p.block_out_channels, p.layers_per_block, p.latent_channels,
                     p.norm_num_groups, p.seed)  # fmt: skip


def synthetic_frames(n: int = 48, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with a bright square: easy to reconstruct, not constant."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        base = rng.uniform(0, 255, 3) * 0.5
        slope = rng.uniform(-100, 100, 3)
        image = base + slope * (ramp[:, None, None] + ramp[None, :, None]) / 2 + 60
        x, y = rng.integers(0, size - 5, 2)
        image[y : y + 5, x : x + 5] = 240
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and one thread keeps the tests fast on a busy host."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def saved_vae(tmp_path):
    vae = tiny_vae()
    set_scaling_factor(vae, synthetic_frames(8))
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    return vae, tmp_path / "vae"


def test_load_vae_round_trip_gives_the_same_outputs(saved_vae):
    vae, folder = saved_vae
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_vae(folder)
    assert loaded.config.scaling_factor == pytest.approx(vae.config.scaling_factor)
    frames = synthetic_frames(3)
    latents = encode_frames(vae, frames)
    torch.testing.assert_close(encode_frames(loaded, frames), latents)
    torch.testing.assert_close(decode_latents(loaded, latents), decode_latents(vae, latents))


def test_load_vae_accepts_a_stable_diffusion_folder_layout(tmp_path):
    tiny_vae().save_pretrained(tmp_path / "sd" / "vae", safe_serialization=True)
    assert vae_downsample_factor(load_vae(tmp_path / "sd")) == 2


def test_load_vae_errors_name_the_folder(tmp_path):
    with pytest.raises(MissingInputError, match="missing-vae"):
        load_vae(tmp_path / "missing-vae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match=r"empty.*config\.json"):
        load_vae(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    with pytest.raises(MissingInputError, match=r"noweights.*safetensors"):
        load_vae(tmp_path / "noweights")


def tiny_temporal_vae():
    """SVD's VAE class (temporal decoder), two levels of 32 channels (its group norms need 32),
    saved and loaded in its real format."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    return AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        layers_per_block=1, latent_channels=2, sample_size=16,
    ).eval()  # fmt: skip


def test_load_vae_loads_svd_s_temporal_decoder_vae(tmp_path):
    from diffusers import AutoencoderKLTemporalDecoder

    vae = tiny_temporal_vae()
    vae.save_pretrained(tmp_path / "svd" / "vae", safe_serialization=True)
    loaded = load_vae(tmp_path / "svd")  # an SVD folder: the VAE in vae/
    assert isinstance(loaded, AutoencoderKLTemporalDecoder)
    saved, read = vae.state_dict(), loaded.state_dict()
    assert saved.keys() == read.keys() and all(torch.equal(saved[k], read[k]) for k in saved)
    frames = synthetic_frames(5)
    latents = encode_frames(loaded, frames)
    assert latents.shape == (5, 2, 8, 8)
    # The five frames are decoded as one clip: the temporal layers see them together.
    decoded = decode_latents(loaded, latents)
    with torch.no_grad():
        expected = vae.decode(latents / vae.config.scaling_factor, num_frames=5).sample
    torch.testing.assert_close(decoded, expected.clamp(-1, 1))


def test_load_vae_refuses_weights_that_do_not_match_the_class(tmp_path):
    """SVD's VAE folder read as an image AutoencoderKL: diffusers would warn and draw the
    decoder at random; here it is an error naming the folder and the keys."""
    folder = tmp_path / "svd-vae"
    tiny_temporal_vae().save_pretrained(folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["_class_name"] = "AutoencoderKL"
    config["up_block_types"] = ["UpDecoderBlock2D"] * 2
    config["norm_num_groups"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"svd-vae: the weights do not match AutoencoderKL: "
                                         r"missing keys: .*unexpected keys: "):  # fmt: skip
        load_vae(folder)
    config["_class_name"] = "UNet2DModel"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="svd-vae: config.json names UNet2DModel"):
        load_vae(folder)


def test_load_vae_accepts_fp16_variant_weights_in_fp32(tmp_path):
    vae = tiny_vae()
    vae.half().save_pretrained(tmp_path / "v", safe_serialization=True, variant="fp16")
    assert (tmp_path / "v" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (tmp_path / "v" / "diffusion_pytorch_model.safetensors").exists()
    loaded = load_vae(tmp_path / "v")
    assert loaded.dtype == torch.float32
    for name, tensor in vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor.float(), rtol=0, atol=0)


def test_build_vae_downsample_factor_and_validation():
    assert vae_downsample_factor(tiny_vae()) == 2
    three = tiny_vae(block_out_channels=[8, 8, 16])
    assert vae_downsample_factor(three) == 4
    assert three.config.sample_size == 16
    with pytest.raises(ValueError, match="norm_num_groups"):
        tiny_vae(block_out_channels=[6, 16])
    with pytest.raises(ValueError, match="size"):
        tiny_vae(size=18, block_out_channels=[8, 8, 16])
    # Seeded: two builds have the same weights.
    a, b = tiny_vae(), tiny_vae()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_encode_decode_shapes_range_and_batching():
    vae = tiny_vae()
    frames = synthetic_frames(5)
    latents = encode_frames(vae, frames, batch_size=2)
    assert latents.shape == (5, 2, 8, 8)
    torch.testing.assert_close(latents, encode_frames(vae, frames, batch_size=16))
    torch.testing.assert_close(latents, encode_frames(vae, frames_to_images(frames)))
    sampled = encode_frames(vae, frames, sample=True, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == latents.shape and not torch.equal(sampled, latents)
    images = decode_latents(vae, latents, batch_size=3)
    assert images.shape == (5, 3, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        encode_frames(vae, frames.astype(np.float32))


def test_set_scaling_factor_gives_unit_variance_latents():
    vae = tiny_vae()
    frames = synthetic_frames(16)
    factor = set_scaling_factor(vae, frames)
    assert vae.config.scaling_factor == pytest.approx(factor)
    assert encode_frames(vae, frames).std().item() == pytest.approx(1.0, rel=1e-3)


def test_resolve_vae_reads_pretrained_json_or_the_folder(saved_vae, tmp_path):
    vae, folder = saved_vae
    out = tmp_path / "stage_out"
    out.mkdir()
    (out / "pretrained.json").write_text(json.dumps({"path": str(folder)}))
    frames = synthetic_frames(2)
    expected = encode_frames(vae, frames)
    torch.testing.assert_close(encode_frames(resolve_vae(out), frames), expected)
    torch.testing.assert_close(encode_frames(resolve_vae(folder), frames), expected)
    (out / "pretrained.json").write_text(json.dumps({"path": str(tmp_path / "gone")}))
    with pytest.raises(MissingInputError, match="gone"):
        resolve_vae(out)


def _curated(rows: list[dict]) -> pd.DataFrame:
    """A CURATED table with the given columns set and neutral values elsewhere."""
    empty = {pa.string(): "", pa.bool_(): True, pa.int32(): 0, pa.float64(): 0.0}
    full = []
    for row in rows:
        base = {f.name: empty.get(f.type, []) for f in tables.CURATED}
        full.append({**base, **row})
    return pd.DataFrame(full)


def test_sample_training_frames_reads_and_resizes(video_factory):
    path = video_factory("a.mp4", seconds=1.0, size=64, audio=None)  # 25 frames
    clips = _curated([{"path": str(path), "n_frames": 25}, {"path": str(path), "n_frames": 25}])
    frames = sample_training_frames(clips, 32, 10, np.random.default_rng(0))
    assert frames.shape == (10, 32, 32, 3) and frames.dtype == np.uint8
    assert len(sample_training_frames(clips, 16, 500, np.random.default_rng(0))) == 50
    with pytest.raises(ValueError, match="no clips"):
        sample_training_frames(clips.iloc[:0], 16, 4, np.random.default_rng(0))


@pytest.mark.parametrize("pretrained", [False, True])
def test_stage_trains_or_records_a_pretrained_vae(video_factory, saved_vae, tmp_path, monkeypatch,
                                                  pretrained):  # fmt: skip
    from stages.common import run_stage
    from stages.train_vae import main, parser

    monkeypatch.chdir(tmp_path)  # DVCLive must not find the project's DVC repository
    path = video_factory("clip.mp4", seconds=1.0, size=64, audio=None)
    rows = [{"clip_id": name, "path": str(path), "n_frames": 25, "split": split}
            for name, split in (("a", "train"), ("b", "test"))]  # fmt: skip
    clips = _curated(rows)
    tables.write_table(clips, tmp_path / "clips.parquet", tables.CURATED)
    section = {**TINY, "steps": 3, "pretrained": str(saved_vae[1]) if pretrained else None}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_vae": section}))
    argv = ["--params", "params.yaml", "--clips", "clips.parquet", "--out", "vae",
            "--metrics", "m.json", "--live", "live"]  # fmt: skip
    assert run_stage(main, parser(), argv) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["eval_split"] == "test" and metrics["psnr_db"] > 0
    assert (tmp_path / "vae" / "reconstructions.png").is_file()
    assert (tmp_path / "live" / "metrics.json").is_file()
    if pretrained:
        assert metrics["pretrained"] == str(saved_vae[1])
        assert json.loads((tmp_path / "vae" / "pretrained.json").read_text()) == {
            "path": str(saved_vae[1])
        }
        assert not (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").exists()
    else:
        assert metrics["steps"] == 3 and metrics["final_loss"] > 0
        assert metrics["resumed_from"] == 0
        vae = resolve_vae(tmp_path / "vae")
        assert vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
        assert not (tmp_path / "dvc.yaml").exists()
        # The checkpoints live in the output folder and survive its rewrite: a longer run
        # resumes from them.
        assert [s for s, _ in list_checkpoints(tmp_path / "vae" / "checkpoints")] == [3]
        section["steps"] = 5
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_vae": section}))
        assert run_stage(main, parser(), argv) == 0
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["resumed_from"] == 3 and metrics["final_loss"] > 0
        assert [s for s, _ in list_checkpoints(tmp_path / "vae" / "checkpoints")] == [3, 5]
        assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").is_file()


def test_stage_falls_back_to_train_frames_without_test_clips(video_factory, tmp_path, monkeypatch):
    from stages.common import run_stage
    from stages.train_vae import main, parser

    monkeypatch.chdir(tmp_path)
    path = video_factory("clip.mp4", seconds=1.0, size=64, audio=None)
    clips = _curated([{"clip_id": "a", "path": str(path), "n_frames": 25, "split": "train"}])
    tables.write_table(clips, tmp_path / "clips.parquet", tables.CURATED)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_vae": {**TINY, "steps": 2}}))
    argv = ["--params", "params.yaml", "--clips", "clips.parquet", "--out", "vae",
            "--metrics", "m.json", "--live", "live"]  # fmt: skip
    assert run_stage(main, parser(), argv) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["eval_split"] == "train" and "no kept test clips" in metrics["note"]

"""Starting UniVDM from a Stable Video Diffusion UNet folder (Appendix B.1), on tiny models the
tests build and save with ``save_pretrained``; and the reference attention of Section 4.1.1."""

from dataclasses import replace

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel

from pipeline.errors import MissingInputError
from pipeline.models.svd_init import PretrainedMismatchError, load_pretrained_unet
from pipeline.models.univdm import UniVDM, UniVDMConfig, added_time_ids

# The SVD layout at toy widths: attention at every level but the deepest, CLIP as the context.
SVD_LIKE = UniVDMConfig(
    latent_channels=4, latent_size=8, frames=3, audio_dim=6, audio_context=1, clip_dim=32,
    block_out_channels=[32, 64], cross_attention_dim=32, attention_head_dim=8,
    addition_time_embed_dim=8, cross_attention_levels=[True, False], parametrisation="svd",
    reference_gate=True, condition_scale=1 / 0.18215,
)  # fmt: skip


def _svd_unet(config: UniVDMConfig = SVD_LIKE, **changes) -> UNetSpatioTemporalConditionModel:
    kwargs = config.unet_kwargs()
    kwargs["in_channels"] = 2 * config.latent_channels  # SVD: [noisy | image latent]
    kwargs.update(changes)
    torch.manual_seed(3)
    unet = UNetSpatioTemporalConditionModel(**kwargs)
    with torch.no_grad():  # random (not zero) output layers, so equality means something
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return unet.eval()


@pytest.fixture(scope="module")
def svd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svd") / "unet"
    _svd_unet().save_pretrained(folder)
    return folder


def _inputs(batch=2, seed=1, config=SVD_LIKE):
    g = torch.Generator().manual_seed(seed)
    size = (config.latent_channels, config.latent_size, config.latent_size)
    noisy = torch.randn(batch, config.frames, *size, generator=g)
    reference = torch.randn(batch, *size, generator=g)
    audio = torch.randn(batch, config.frames, config.window, config.audio_dim, generator=g)
    clip = torch.randn(batch, config.clip_dim, generator=g) if config.clip_dim else None
    return noisy, reference, audio, clip


def test_loading_is_strict_and_names_every_key(svd_folder):
    model = UniVDM(SVD_LIKE)
    report = load_pretrained_unet(model, svd_folder)
    pretrained = set(UNetSpatioTemporalConditionModel.from_pretrained(svd_folder).state_dict())
    assert set(report.copied) | set(report.replaced) == pretrained  # every pretrained key used
    assert report.replaced == {"conv_in.weight": report.replaced["conv_in.weight"]}
    assert set(report.new) == set(model.unet.state_dict()) - pretrained
    assert report.new and all(".processor." in k for k in report.new)
    assert any(k.endswith("attn1.processor.gate") for k in report.new)
    assert any(k.endswith("attn2.processor.to_out.weight") for k in report.new)
    weight = model.unet.conv_in.weight
    assert (weight[:, 8] == 0).all()  # the condition-mask channel starts at zero


def test_with_new_parts_at_init_univdm_equals_the_svd_unet(svd_folder):
    """The proof that nothing was scrambled: same inputs, same output as the plain SVD UNet."""
    model = UniVDM.from_pretrained_unet(SVD_LIKE, svd_folder).eval()
    svd = UNetSpatioTemporalConditionModel.from_pretrained(svd_folder).eval()
    noisy, reference, audio, clip = _inputs()
    condition = torch.zeros_like(noisy)
    condition[:, 0] = torch.randn_like(noisy[:, 0])
    mask = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    timesteps = torch.tensor([40, 700])
    with torch.no_grad():
        eps = model(noisy, timesteps, reference, audio, condition, mask, image_embeds=clip).epsilon
        sample = model.build_input(noisy, reference, condition, mask)
        unet_t = model.noise_input.unet_timesteps(timesteps)
        added = added_time_ids(SVD_LIKE, 2, "cpu", torch.float32)
        v = svd(sample[:, :, :8], unet_t, clip[:, None], added, return_dict=False)[0]
    # SVD's own input: its 8 channels, its CLIP token as the context, c_noise, its time ids.
    abar = model.noise_input.abar[timesteps].view(2, 1, 1, 1, 1)
    expected = abar.sqrt() * v[:, 1:] + (1 - abar).sqrt() * noisy  # v -> epsilon
    torch.testing.assert_close(eps, expected, rtol=1e-5, atol=1e-5)
    sigma = ((1 - abar) / abar).sqrt().flatten()
    torch.testing.assert_close(unet_t, sigma.log() / 4)


def test_time_ids_keep_svd_meaning():
    ids = added_time_ids(replace(SVD_LIKE, fps=25.0), 2, "cpu", torch.float32)
    assert ids.tolist() == [[24.0, 127.0, 0.0]] * 2  # SVD is conditioned on fps - 1


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(in_channels=9), "in_channels 9"),
        (dict(cross_attention_dim=16), "cross_attention_dim 16"),
        (
            dict(
                down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 2,
                up_block_types=("CrossAttnUpBlockSpatioTemporal",) * 2,
            ),
            "down_block_types",
        ),  # fmt: skip
    ],
)
def test_a_folder_of_another_shape_is_one_error_naming_it(tmp_path, change, words):
    folder = tmp_path / "unet"
    _svd_unet(**change).save_pretrained(folder)
    with pytest.raises(PretrainedMismatchError) as err:
        load_pretrained_unet(UniVDM(SVD_LIKE), folder)
    assert str(folder) in str(err.value) and words in str(err.value)


def test_missing_files_and_other_architectures_are_errors(tmp_path, svd_folder):
    with pytest.raises(MissingInputError, match="config.json missing"):
        load_pretrained_unet(UniVDM(SVD_LIKE), tmp_path)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((svd_folder / "config.json").read_text())
    with pytest.raises(MissingInputError, match="no pretrained UNet weights"):
        load_pretrained_unet(UniVDM(SVD_LIKE), no_weights)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    with pytest.raises(PretrainedMismatchError, match="architecture 'UNet2DConditionModel'"):
        load_pretrained_unet(UniVDM(SVD_LIKE), other)


def test_a_pretrained_start_needs_the_gate(svd_folder):
    with pytest.raises(ValueError, match="reference_gate"):
        load_pretrained_unet(UniVDM(replace(SVD_LIKE, reference_gate=False)), svd_folder)


# ---------------------------------------------------------------------- reference attention
SCRATCH = replace(SVD_LIKE, reference_gate=False, parametrisation="epsilon", clip_dim=None,
                  cross_attention_levels=None, condition_scale=1.0)  # fmt: skip


def test_reference_reaches_positions_where_it_does_not_differ():
    """Attention is not position-local: changing the reference only in its left columns changes
    the frames' output in their right columns, in one spatial layer and in the whole model."""
    from diffusers.models.attention_processor import Attention

    from pipeline.models.reference_attention import (
        FrameLayout,
        PlainSelfAttnProcessor,
        ReferenceSelfAttnProcessor,
    )  # fmt: skip

    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8).eval()
    layout = FrameLayout()
    layout.frames = 3  # reference + 2 frames, 4 x 4 tokens each
    hidden = torch.randn(3, 4, 4, 16)  # (B * F, rows, columns, C), B = 1
    changed = hidden.clone()
    changed[0, :, :2] += 2.0  # slot 0, columns 0-1 only
    frames_out = {}
    for name, processor in (("reference", ReferenceSelfAttnProcessor(layout)),
                            ("plain", PlainSelfAttnProcessor())):  # fmt: skip
        attn.set_processor(processor)
        with torch.no_grad():
            a, b = (attn(x.flatten(1, 2)).view(3, 4, 4, 16) for x in (hidden, changed))
        frames_out[name] = (a - b)[1:, :, 2:].abs().amax()  # frames 1-2, columns 2-3
    assert frames_out["reference"] > 1e-2  # the reference reached other positions ...
    assert frames_out["plain"] == 0  # ... which plain self-attention cannot do in one layer

    config = replace(SCRATCH, latent_size=16, block_out_channels=[32], frames=2)
    model = UniVDM(config).eval()
    noisy, reference, audio, _ = _inputs(batch=1, config=config)
    other = reference.clone()
    other[..., :4] += 3.0  # columns 0-3 only
    with torch.no_grad():
        a = model(noisy, torch.tensor([500]), reference, audio).epsilon
        b = model(noisy, torch.tensor([500]), other, audio).epsilon
    assert (a - b)[..., 12:].abs().amax() > 1e-3  # columns 12-15


def test_gate_zero_is_plain_self_attention_and_gate_one_is_joint():
    torch.manual_seed(0)
    gated = UniVDM(replace(SCRATCH, reference_gate=True)).eval()
    joint = UniVDM(SCRATCH).eval()
    joint.load_state_dict(gated.state_dict(), strict=False)  # the same weights, no gates
    from pipeline.models.reference_attention import PlainSelfAttnProcessor

    plain = UniVDM(SCRATCH).eval()
    plain.load_state_dict(joint.state_dict())
    for name, module in plain.unet.named_modules():
        if name.endswith("attn1") and "temporal" not in name:
            module.set_processor(PlainSelfAttnProcessor())
    noisy, reference, audio, _ = _inputs()
    t = torch.tensor([300, 300])
    with torch.no_grad():
        out_plain = plain(noisy, t, reference, audio).epsilon
        out_gate0 = gated(noisy, t, reference, audio).epsilon
        for name, p in gated.named_parameters():
            if name.endswith("processor.gate"):
                p.fill_(1.0)
        out_gate1 = gated(noisy, t, reference, audio).epsilon
        out_joint = joint(noisy, t, reference, audio).epsilon
    torch.testing.assert_close(out_gate0, out_plain)
    torch.testing.assert_close(out_gate1, out_joint)
    assert not torch.allclose(out_plain, out_joint)


def test_the_paper_profile_builds_on_meta_with_the_svd_layout():
    from pipeline.config import load_params
    from pipeline.training.univdm_trainer import univdm_config

    params = load_params("params/paper.yaml")
    config = univdm_config(params.train_univdm, fps=25.0, latent_channels=4, downsample=8,
                           audio_dim=768 * 3, clip_dim=1024)  # fmt: skip
    with torch.device("meta"):
        model = UniVDM(config)
    kwargs = config.unet_kwargs()
    assert kwargs["down_block_types"] == (
        "CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal",
    )  # fmt: skip
    assert kwargs["in_channels"] == 9 and kwargs["num_attention_heads"] == (5, 10, 20, 20)
    backbone = sum(p.numel() for n, p in model.unet.named_parameters() if ".processor." not in n)
    assert 1.45e9 < backbone < 1.6e9  # SVD's UNet: about 1.52 B parameters


def test_a_classifier_builds_from_an_svd_layout_univdm(svd_folder):
    from pipeline.models.classifier import SyncClassifier

    univdm = UniVDM.from_pretrained_unet(SVD_LIKE, svd_folder)
    clf = SyncClassifier.from_univdm(univdm, width=32, layers=1, heads=4, max_frames=8).eval()
    noisy, _, _, _ = _inputs()
    audio = torch.randn(2, SVD_LIKE.frames, SVD_LIKE.audio_dim)
    with torch.no_grad():
        logits = clf(noisy, torch.tensor([10, 900]), audio)
    assert logits.shape == (2,) and torch.isfinite(logits).all()

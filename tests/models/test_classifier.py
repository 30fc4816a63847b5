"""PCE sync classifier: encoder copied from UniVDM, shapes, masks, RoPE, loss, persistence."""

import copy
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from pipeline.errors import MissingInputError
from pipeline.models.classifier import (
    SyncClassifier,
    SyncClassifierConfig,
    crop_region,
    region_boxes,
)
from pipeline.models.rope import rope
from pipeline.models.sync_correlation import pearson_over_frames
from pipeline.models.univdm import UniVDM, UniVDMConfig

TINY = UniVDMConfig(latent_channels=4, latent_size=8, frames=3, audio_dim=6, audio_context=1,
                    block_out_channels=[32, 32], cross_attention_dim=32, attention_head_dim=8,
                    addition_time_embed_dim=8)  # fmt: skip
SMALL = dict(width=32, layers=2, heads=4, max_frames=16)


@pytest.fixture(scope="module")
def univdm():
    torch.manual_seed(0)
    model = UniVDM(TINY).eval()
    with torch.no_grad():  # "trained" weights: nothing left at its initial value
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def clf(univdm):
    torch.manual_seed(1)
    return SyncClassifier.from_univdm(univdm, **SMALL).eval()


def _inputs(batch, tv, ta, seed=2):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, tv, 4, 8, 8, generator=g)
    audio = torch.randn(batch, ta, TINY.audio_dim, generator=g)
    return z, torch.randint(0, 1000, (batch,), generator=g), audio


def test_encoder_weights_are_copied_from_univdm(univdm, clf):
    source = univdm.unet.state_dict()
    copied = clf.encoder.state_dict()
    assert copied and not any(k.startswith(("up_blocks", "conv_out")) for k in copied)
    for key, tensor in copied.items():
        assert torch.equal(tensor, source[key]), key
    assert torch.equal(clf.context_token, univdm.null_image)
    # Fig. 4: the encoder keeps UniVDM's audio attention (down and mid blocks), weights copied.
    audio_keys = [k for k in copied if ".attn2.processor." in k]
    assert audio_keys and all(k.startswith(("down_blocks", "mid_block")) for k in audio_keys)
    theirs = univdm.audio_proj.state_dict()
    for name, tensor in clf.encoder_audio_proj.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    assert torch.equal(clf.encoder_audio_offset, univdm.audio_offset)


def test_encoder_features_change_when_only_the_audio_changes(clf):
    z, t, audio = _inputs(2, 3, 3)
    with torch.no_grad():
        a = clf.encode_video(z, t, audio)
        b = clf.encode_video(z, t, audio.flip(1))
    assert a.shape == b.shape == (2, 3, 32)
    assert (a - b).abs().amax() > 1e-4


def test_from_univdm_names_missing_keys(univdm, monkeypatch):
    original = univdm.unet.state_dict

    def lacking(*args, **kwargs):
        sd = original(*args, **kwargs)
        sd.pop("conv_in.weight")
        return sd

    monkeypatch.setattr(univdm.unet, "state_dict", lacking)
    with pytest.raises(KeyError, match="conv_in.weight"):
        SyncClassifier.from_univdm(univdm, **SMALL)


@pytest.mark.parametrize("tv,ta", [(3, 5), (4, 2)])
def test_logit_shapes_for_unequal_lengths(clf, tv, ta):
    z, t, audio = _inputs(2, tv, ta)
    with torch.no_grad():
        logits = clf(z, t, audio)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    assert ((clf.score(logits) > 0) & (clf.score(logits) < 1)).all()


def test_padded_audio_tokens_are_ignored(clf):
    z, t, audio = _inputs(2, 3, 4)
    padded = torch.cat([audio, torch.randn(2, 3, TINY.audio_dim) * 5], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    with torch.no_grad():
        alone = clf(z[:1], t[:1], audio[:1])
        batched = clf(z, t, padded, audio_mask=mask)
        unmasked = clf(z, t, padded)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-5)  # the padding would matter


def test_energy_gradient_reaches_the_latent(clf):
    z, t, audio = _inputs(2, 3, 3)
    z.requires_grad_(True)
    clf.guidance_energy(clf(z, t, audio)).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_rope_depends_on_relative_position_only():
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 2, 1, 8, generator=g), torch.randn(1, 2, 1, 8, generator=g)

    def dot(p, r):
        return (rope(q, torch.tensor([p])) * rope(k, torch.tensor([r]))).sum(-1)

    torch.testing.assert_close(dot(2, 5), dot(9, 12))
    torch.testing.assert_close(dot(0, 0), (q * k).sum(-1))  # position 0 is the identity
    assert not torch.allclose(dot(2, 5), dot(2, 6))
    # Hand check on one pair (D = 2, frequency 1): (1, 0) at position p -> (cos p, sin p).
    x = torch.zeros(1, 1, 1, 2)
    x[..., 0] = 1.0
    angle = torch.tensor(0.7)
    expected = torch.stack([angle.cos(), angle.sin()])
    torch.testing.assert_close(rope(x, torch.tensor([0.7]))[0, 0, 0], expected)


def test_bce_loss_and_guidance_energy():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 0.0, 1.0])
    s = torch.sigmoid(logits)
    hand = -(labels * s.log() + (1 - labels) * (1 - s).log()).mean()
    torch.testing.assert_close(SyncClassifier.bce_loss(logits, labels), hand)
    torch.testing.assert_close(SyncClassifier.guidance_energy(logits), -s.log())
    big = torch.tensor([-200.0, 200.0])
    energy = SyncClassifier.guidance_energy(big)
    assert torch.isfinite(energy).all()
    torch.testing.assert_close(energy, torch.tensor([200.0, 0.0]))
    assert F.softplus(torch.tensor(200.0)).item() == 200.0


def test_save_load_round_trip(clf, tmp_path):
    clf.save(tmp_path)
    loaded = SyncClassifier.load(tmp_path).eval()
    assert loaded.config == clf.config
    assert isinstance(loaded.config, SyncClassifierConfig) and loaded.config.audio_dim == 6
    z, t, audio = _inputs(2, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, t, audio), clf(z, t, audio), atol=0, rtol=0)
    with pytest.raises(MissingInputError):
        SyncClassifier.load(tmp_path / "nothing")


def test_encoder_path_matches_the_full_unet(univdm, clf):
    """encode_video = the UniVDM UNet's own mid-block output (plain self-attention: no reference
    slot; audio attention over each frame's window), max-pooled per frame."""
    from pipeline.models.reference_attention import PlainSelfAttnProcessor

    unet = copy.deepcopy(univdm.unet)
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.endswith("attn1") and "temporal" not in name:
            module.set_processor(PlainSelfAttnProcessor())
    seen = {}
    unet.mid_block.register_forward_hook(lambda m, i, o: seen.setdefault("mid", o))
    z, t, audio = _inputs(2, 3, 3)
    sample = torch.cat([z, torch.zeros(2, 3, 5, 8, 8)], dim=2)
    added = torch.tensor([[TINY.fps - 1, 127.0, 0.0]] * 2)
    with torch.no_grad():
        context = clf.encoder_context(audio, 3)  # (B, 1 + 3 * W, D)
        unet(sample, t, context, added)
        ours = clf.encode_video(z, t, audio)
    torch.testing.assert_close(ours, seen["mid"].amax(dim=(-2, -1)).view(2, 3, -1))
    # The context: the token, then frame f's window of rows f-1, f, f+1 clamped to [0, 2].
    tokens = clf.encoder_audio_proj(audio[:, [0, 0, 1]]) + clf.encoder_audio_offset
    torch.testing.assert_close(context[:, 1:4], tokens)


def test_encoder_is_copied_from_the_saved_univdm_checkpoint(univdm, tmp_path):
    """The stage's path: UniVDM saved to a folder, loaded, encoder copied (not re-initialised)."""
    univdm.save(tmp_path / "final")
    clf = SyncClassifier.from_univdm(UniVDM.load(tmp_path / "final"), **SMALL)
    fresh = SyncClassifier(SyncClassifierConfig(univdm=TINY, **SMALL))
    source = univdm.unet.state_dict()
    for key, tensor in clf.encoder.state_dict().items():
        assert torch.equal(tensor, source[key]), key
    differs = [k for k, v in fresh.encoder.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, source[k])]  # fmt: skip
    assert differs  # a fresh encoder would not match: the copy is real


def test_audio_statistics_standardise_and_are_saved(univdm, tmp_path):
    torch.manual_seed(4)
    clf = SyncClassifier.from_univdm(univdm, **SMALL).eval()
    features = torch.randn(50, TINY.audio_dim) * 20 - 40  # log-mel-like scale
    clf.set_audio_statistics(features)
    torch.testing.assert_close(clf.audio_mean, features.mean(0))
    torch.testing.assert_close(clf.audio_std, features.std(0))
    z, t, _ = _inputs(1, 3, 3)
    audio = features[:3][None]
    seen = []
    clf.audio_proj.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():  # the transformer's audio tokens read standardised features
        clf(z, t, audio)
    torch.testing.assert_close(seen[0], (audio - features.mean(0)) / features.std(0))
    clf.save(tmp_path)
    assert torch.equal(SyncClassifier.load(tmp_path).audio_mean, clf.audio_mean)


# ------------------------------------------------------------------ region crop (crop_size)
def _cropping(clf, size):
    """``clf``'s weights in a classifier that reads its region's box at ``size x size``."""
    config = SyncClassifierConfig(**{**asdict(clf.config), "crop_size": size})
    model = SyncClassifier(config).eval()
    model.load_state_dict(clf.state_dict(), strict=True)
    return model


def _box_mask(batch_boxes, size=8):
    """``(B, size, size)`` masks with ones on the half-open cell boxes ``(y0, y1, x0, x1)``."""
    mask = torch.zeros(len(batch_boxes), size, size)
    for m, (y0, y1, x0, x1) in zip(mask, batch_boxes, strict=True):
        m[y0:y1, x0:x1] = 1.0
    return mask


def test_region_boxes_by_hand():
    region = _box_mask([(2, 5, 1, 7), (0, 8, 3, 4)])
    region[1] *= 0.5  # any positive multiplier is inside
    assert region_boxes(region) == [(2, 5, 1, 7), (0, 8, 3, 4)]
    assert region_boxes(torch.zeros(1, 8, 6)) == [(0, 8, 0, 6)]  # no face: the whole frame


def test_crop_region_values():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(2, 3, 4, 8, 8, generator=g)
    region = _box_mask([(1, 5, 2, 6), (4, 8, 0, 4)])
    crops = crop_region(z, region, 4)  # both boxes are 4 x 4: copied cell for cell
    assert crops.shape == (2, 3, 4, 4, 4)
    assert torch.equal(crops[0], z[0, ..., 1:5, 2:6]) and torch.equal(crops[1], z[1, ..., 4:8, 0:4])
    # Resized boxes (6 x 3 -> 4 x 4, smaller and larger than the grid): constants stay constant.
    flat = torch.full((1, 2, 4, 8, 8), 0.7)
    resized = crop_region(flat, _box_mask([(0, 6, 5, 8)]), 4)
    torch.testing.assert_close(resized, torch.full((1, 2, 4, 4, 4), 0.7))


def test_crop_of_the_whole_frame_is_the_uncropped_classifier(clf):
    """Where the two paths must agree: a region covering the frame at the latent's own size."""
    z, t, audio = _inputs(2, 3, 4)
    cropping = _cropping(clf, 8)
    with torch.no_grad():
        plain = clf(z, t, audio)
        torch.testing.assert_close(cropping(z, t, audio, region=torch.ones(2, 8, 8)), plain,
                                   atol=0, rtol=0)  # fmt: skip
        torch.testing.assert_close(cropping(z, t, audio), plain, atol=0, rtol=0)  # support: all


def test_cropping_classifier_reads_exactly_its_box(clf):
    """crop_size = the box side: the logits are the plain classifier's on the box's cells; a
    batch of two boxes is each video alone; the region defaults to the input's support."""
    z, t, audio = _inputs(2, 3, 4)
    boxes = [(1, 5, 2, 6), (3, 7, 4, 8)]
    region = _box_mask(boxes)
    masked = z * region[:, None, None]
    cropping = _cropping(clf, 4)
    with torch.no_grad():
        logits = cropping(masked, t, audio, region=region)
        by_hand = torch.cat([
            clf(masked[i : i + 1, ..., y0:y1, x0:x1], t[i : i + 1], audio[i : i + 1])
            for i, (y0, y1, x0, x1) in enumerate(boxes)
        ])  # fmt: skip
        torch.testing.assert_close(logits, by_hand, atol=1e-5, rtol=0)
        torch.testing.assert_close(cropping(masked, t, audio), logits, atol=0, rtol=0)
        # What lies outside the box is never read.
        outside = masked + (1 - region)[:, None, None] * 100.0
        torch.testing.assert_close(cropping(outside, t, audio, region=region), logits,
                                   atol=0, rtol=0)  # fmt: skip
    assert logits.shape == (2,)


def test_cropping_gradient_is_zero_outside_the_box(clf):
    from pipeline.inference.guidance import energy_gradient

    z, t, audio = _inputs(2, 3, 4)
    region = _box_mask([(0, 6, 1, 4), (2, 5, 2, 8)])  # 6 x 3 and 3 x 6, resized to 4 x 4
    grad = energy_gradient(_cropping(clf, 4), z, t, audio, region)
    assert grad.shape == z.shape and torch.isfinite(grad).all()
    inside = region[:, None, None].expand_as(z) > 0
    assert grad[~inside].abs().max() == 0
    for i in range(2):  # every cell of each box reaches the resized grid: all get a gradient
        assert (grad[i][inside[i]] != 0).all()


def test_crop_size_is_checked_and_saved(clf, tmp_path):
    with pytest.raises(ValueError, match="crop_size 3"):
        SyncClassifierConfig(univdm=TINY, **SMALL, crop_size=3)  # two levels: even sides only
    cropping = _cropping(clf, 4)
    cropping.save(tmp_path)
    assert SyncClassifier.load(tmp_path).config.crop_size == 4
    # A config written before crop_size existed loads as the uncropped classifier.
    legacy = {k: v for k, v in asdict(clf.config).items() if k != "crop_size"}
    assert SyncClassifierConfig(**legacy).crop_size is None


# ---------------------------------------------------------------------------------- correlation
def test_pearson_over_frames_by_hand():
    x = torch.tensor([[[1.0], [2.0], [3.0], [10.0]]])  # (1, 4, 1)
    y = torch.tensor([[[2.0], [4.0], [6.0], [-5.0]]])
    # first three frames: y = 2x exactly -> r = 1; the masked fourth frame must not count
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(pearson_over_frames(x, y, mask, eps=0.0), torch.tensor([[1.0]]))
    # all four: xc = (-3, -2, -1, 6), yc = (0.25, 2.25, 4.25, -6.75); by hand
    xc, yc = torch.tensor([-3.0, -2, -1, 6]), torch.tensor([0.25, 2.25, 4.25, -6.75])
    expected = (xc * yc).sum() / ((xc**2).sum() * (yc**2).sum()).sqrt()
    torch.testing.assert_close(pearson_over_frames(x, y, eps=0.0)[0, 0], expected)
    # blind to offset and positive scale of either series
    torch.testing.assert_close(pearson_over_frames(3 * x + 7, y - 1, eps=0.0),
                               pearson_over_frames(x, y, eps=0.0))  # fmt: skip
    # a constant series: r = 0 with a finite gradient
    flat = torch.ones(1, 4, 1, requires_grad=True)
    r = pearson_over_frames(flat, y)
    r.sum().backward()
    assert r.item() == 0 and torch.isfinite(flat.grad).all()


@pytest.fixture(scope="module")
def corr_clf(univdm):
    torch.manual_seed(1)
    return SyncClassifier.from_univdm(univdm, sync_channels=3, **SMALL).eval()


def _without_head(model):
    """The paper's classifier with ``model``'s weights, correlation head left out."""
    plain = SyncClassifier(SyncClassifierConfig(univdm=asdict(TINY), **SMALL)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("correlation.")})  # fmt: skip
    return plain


def test_correlation_head_adds_its_term_to_the_cls_logit(corr_clf):
    plain = _without_head(corr_clf)
    z, t, audio = _inputs(2, 5, 5)
    with torch.no_grad():
        total = corr_clf(z, t, audio)
        cls_only = plain(z, t, audio)
        corr_clf.correlation.weight.zero_()
        zeroed = corr_clf(z, t, audio)
        corr_clf.correlation.weight.fill_(1.0)
    torch.testing.assert_close(zeroed, cls_only)  # c = 0: the paper's classifier exactly
    assert not torch.allclose(total, cls_only)
    term = total - cls_only
    assert (term.abs() <= 3.0 + 1e-5).all()  # sum of 3 correlations with c_k = 1


def test_correlation_logit_is_the_heads_term_and_hears_the_audio_order(corr_clf):
    plain = _without_head(corr_clf)
    z, t, audio = _inputs(2, 6, 6)
    with torch.no_grad():
        term = corr_clf.correlation_logit(z, audio)
        torch.testing.assert_close(corr_clf(z, t, audio) - plain(z, t, audio), term,
                                   atol=1e-5, rtol=0)  # fmt: skip
        flipped = corr_clf.correlation_logit(z, audio.flip(1))
    assert not torch.allclose(term, flipped)
    # A video that is a fixed function of its own audio, frame by frame: reversing the audio
    # keeps every frame's pair but breaks the order, so the head with a matching read-out
    # scores the true order higher.
    head = copy.deepcopy(corr_clf.correlation)  # the fixture is shared: change a copy
    loud = torch.linspace(-1, 1, 6)[torch.randperm(6, generator=torch.Generator().manual_seed(0))]
    video = loud[None, :, None, None, None].expand(1, 6, 4, 8, 8).contiguous()
    sound = loud[None, :, None].expand(1, 6, TINY.audio_dim).contiguous()
    with torch.no_grad():
        head.video.weight.zero_()
        head.video.bias.zero_()
        head.video.weight[:, 0] = 1.0  # channel k reads the mean of the first cell
        first, second = head.audio[0], head.audio[2]
        for layer in (first, second):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0] = 1.0  # hidden 0: the sum of the features, shifted to where SiLU rises
        first.bias[0] = 10.0
        second.weight[:, 0] = 1.0  # every channel reads hidden 0: increasing in the loudness
        own = head(video, sound)
        other = head(video, sound.flip(1))
    torch.testing.assert_close(own, head.weight.sum()[None], atol=1e-3, rtol=0)  # r_k = 1
    assert own.item() > other.item()


def test_correlation_head_gradient_and_persistence(corr_clf, tmp_path):
    z, t, audio = _inputs(2, 4, 4)
    z.requires_grad_(True)
    corr_clf.guidance_energy(corr_clf(z, t, audio)).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    corr_clf.save(tmp_path / "c")
    back = SyncClassifier.load(tmp_path / "c").eval()
    assert back.config.sync_channels == 3
    with torch.no_grad():
        torch.testing.assert_close(back(z.detach(), t, audio), corr_clf(z.detach(), t, audio))

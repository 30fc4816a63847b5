"""Audio classifier-free guidance: the "no audio" branch, the CFG equation by hand, s = 0 is plain
sampling, and training's audio dropout."""

from types import SimpleNamespace

import pytest
import torch

from pipeline.config import Params
from pipeline.inference.sampling import ddim_sample, predict_noise
from pipeline.models.audio_attention import ReferenceAudioAttnProcessor
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.univdm_trainer import training_losses

CONFIG = UniVDMConfig(latent_channels=4, latent_size=8, frames=4, audio_dim=3, audio_context=1,
                      block_out_channels=[32, 32], cross_attention_dim=32,
                      addition_time_embed_dim=8)  # fmt: skip
SCHEDULER = noise_scheduler(100)


@pytest.fixture(scope="module")
def model():
    """A UniVDM whose audio path acts (a fresh one's starts as the identity: zero outputs)."""
    torch.manual_seed(0)
    model = UniVDM(CONFIG).eval()
    with torch.no_grad():
        model.reference_audio.normal_()
        for module in model.modules():
            if isinstance(module, ReferenceAudioAttnProcessor):
                module.to_out.weight.normal_(std=0.2)
    return model


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g),
            torch.randn(2, 4, 3, 3, generator=g))  # fmt: skip


def test_dropped_samples_hear_the_no_audio_window_and_the_others_are_unchanged(model):
    _, _, audio = _inputs()
    plain = model.build_context(audio, None)
    dropped = model.build_context(audio, None, drop_audio=torch.tensor([False, True]))
    torch.testing.assert_close(dropped[0], plain[0])
    # Sample 1: the image token, then the "no audio" window for the reference and every frame.
    silent = model.reference_audio.detach().repeat(CONFIG.frames + 1, 1)
    torch.testing.assert_close(dropped[1, 1:], silent)
    torch.testing.assert_close(dropped[1, 0], plain[1, 0])
    # Without audio the prediction no longer depends on the audio given.
    noisy, reference, _ = _inputs()
    other = torch.randn_like(audio)
    both = torch.tensor([True, True])
    with torch.no_grad():
        a = model(noisy, torch.tensor(50), reference, audio, drop_audio=both).epsilon
        b = model(noisy, torch.tensor(50), reference, other, drop_audio=both).epsilon
        c = model(noisy, torch.tensor(50), reference, other).epsilon
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_cfg_is_eps_with_audio_plus_s_times_the_audio_difference(model):
    noisy, reference, audio = _inputs()
    t = torch.tensor(70)
    with torch.no_grad():
        heard = model(noisy, t, reference, audio).epsilon
        unheard = model(noisy, t, reference, audio, drop_audio=torch.tensor([True, True])).epsilon
        guided = predict_noise(model, noisy, t, reference, audio, None, None, None, 2.5)
        plain = predict_noise(model, noisy, t, reference, audio, None, None, None, 0.0)
    torch.testing.assert_close(guided, heard + 2.5 * (heard - unheard), rtol=1e-4, atol=1e-5)
    assert torch.equal(plain, heard)


def test_scale_zero_is_exactly_plain_sampling_and_a_scale_changes_it(model):
    noise, reference, audio = _inputs()
    plain = ddim_sample(model, SCHEDULER, reference, audio, 4, initial_noise=noise)
    same = ddim_sample(model, SCHEDULER, reference, audio, 4, initial_noise=noise, audio_cfg=0.0)
    guided = ddim_sample(model, SCHEDULER, reference, audio, 4, initial_noise=noise,
                         audio_cfg=2.0)  # fmt: skip
    assert torch.equal(same, plain) and not torch.allclose(guided, plain)


class _Latents:
    """A stand-in VAE whose 4-channel latent is the image's first channel, repeated."""

    config = SimpleNamespace(scaling_factor=1.0, shift_factor=None)
    device, dtype = torch.device("cpu"), torch.float32

    def encode(self, images):
        latent = images[:, :1].expand(-1, 4, -1, -1)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: latent))


def _batch():
    g = torch.Generator().manual_seed(3)
    return {"video": torch.rand(2, 4, 3, 8, 8, generator=g) * 2 - 1,
            "reference": torch.rand(2, 3, 8, 8, generator=g) * 2 - 1,
            "audio": torch.randn(2, 4, 3, 3, generator=g), "par_weights": torch.ones(2, 4, 8, 8),
            "areas": torch.zeros(2, 3, 4, 8, 8, dtype=torch.bool),
            "first_frame": torch.tensor([True, False])}  # fmt: skip


def test_audio_dropout_drops_whole_samples_and_zero_keeps_the_random_stream(model, monkeypatch):
    seen = []
    forward = UniVDM.forward

    def spy(self, *args, drop_audio=None, **kwargs):
        seen.append(drop_audio)
        return forward(self, *args, drop_audio=drop_audio, **kwargs)

    monkeypatch.setattr(UniVDM, "forward", spy)

    def loss(**kwargs):
        return training_losses(model, SCHEDULER, _Latents(), _batch(), False,
                               torch.Generator().manual_seed(5), **kwargs)["loss"]  # fmt: skip

    before, again = loss(), loss(audio_dropout=0.0)
    assert seen[:2] == [None, None] and torch.equal(before, again)
    loss(audio_dropout=0.999)
    assert seen[2].tolist() == [True, True]


def test_audio_cfg_needs_a_model_trained_with_audio_dropout():
    with pytest.raises(ValueError, match="audio_dropout"):
        Params.model_validate({"infer": {"audio_cfg": 2.0}})
    params = Params.model_validate({"infer": {"audio_cfg": 2.0},
                                    "train_univdm": {"audio_dropout": 0.1}})  # fmt: skip
    assert params.infer.audio_cfg == 2.0

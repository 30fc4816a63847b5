"""UniVDM: time stacking, unified-noise channels, audio windows and attention, persistence."""

import pytest
import torch

from pipeline.data.windows import audio_windows
from pipeline.errors import MissingInputError
from pipeline.models.audio_attention import ReferenceAudioAttnProcessor
from pipeline.models.univdm import UniVDM, UniVDMConfig, UniVDMOutput

TINY = UniVDMConfig(latent_channels=4, latent_size=8, frames=3, audio_dim=6, audio_context=1,
                    block_out_channels=[32, 32], cross_attention_dim=32, attention_head_dim=8,
                    addition_time_embed_dim=8)  # fmt: skip


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UniVDM(TINY).eval()


def _inputs(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(batch, TINY.frames, 4, 8, 8, generator=g)
    reference = torch.randn(batch, 4, 8, 8, generator=g)
    audio = torch.randn(batch, TINY.frames, TINY.window, TINY.audio_dim, generator=g)
    return noisy, reference, audio


def test_build_input_stacks_the_reference_in_slot_zero(model):
    noisy, reference, _ = _inputs()
    condition = torch.zeros_like(noisy)
    condition[:, 0] = noisy[:, 0] * 0 + 7.0
    mask = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    x = model.build_input(noisy, reference, condition, mask)
    assert x.shape == (2, TINY.frames + 1, 9, 8, 8)
    torch.testing.assert_close(x[:, 0, :4], reference)  # reference latent ...
    torch.testing.assert_close(x[:, 0, 4:8], reference)  # ... in both latent groups
    assert (x[:, 0, 8] == 1).all()
    torch.testing.assert_close(x[:, 1:, :4], noisy)
    # First-frame conditioning: only sample 0, frame 1 of the stack, carries the condition.
    assert (x[0, 1, 4:8] == 7.0).all() and (x[0, 1, 8] == 1).all()
    assert (x[1, 1, 4:9] == 0).all() and (x[:, 2:, 4:9] == 0).all()


def test_noise_only_input_has_empty_condition_channels(model):
    noisy, reference, _ = _inputs()
    x = model.build_input(noisy, reference, None, None)
    assert (x[:, 1:, 4:] == 0).all()


def test_forward_drops_the_reference_slot(model, monkeypatch):
    """With a UNet that echoes its noisy channels, the output is exactly the video frames."""
    noisy, reference, audio = _inputs()

    def echo(sample, timestep, context, added, return_dict=False):
        assert sample.shape[1] == TINY.frames + 1 and context.shape[1] == 1 + 4 * TINY.window
        return (sample[:, :, :4],)

    monkeypatch.setattr(model.unet, "forward", echo)
    out = model(noisy, torch.tensor([5, 900]), reference, audio).epsilon
    torch.testing.assert_close(out, noisy)


def test_forward_shapes_and_first_frame_condition(model):
    noisy, reference, audio = _inputs()
    with torch.no_grad():
        plain = model(noisy, torch.tensor([10, 10]), reference, audio).epsilon
        cond = torch.zeros_like(noisy)
        cond[:, 0] = 1.0
        conditioned = model(noisy, torch.tensor([10, 10]), reference, audio, cond,
                            torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])).epsilon  # fmt: skip
    assert plain.shape == noisy.shape
    assert not torch.allclose(plain, conditioned)  # the condition reaches the network


def test_audio_path_starts_as_identity_then_matters(model):
    noisy, reference, audio = _inputs()
    steps = torch.tensor([100, 100])
    with torch.no_grad():
        a = model(noisy, steps, reference, audio).epsilon
        b = model(noisy, steps, reference, audio * -3 + 1).epsilon
    torch.testing.assert_close(a, b)  # zero-initialised audio output: audio has no effect yet
    trained = UniVDM(TINY).eval()
    trained.load_state_dict(model.state_dict())
    for module in trained.modules():
        if isinstance(module, ReferenceAudioAttnProcessor):
            torch.nn.init.normal_(module.to_out.weight, std=0.5)
    with torch.no_grad():
        c = trained(noisy, steps, reference, audio).epsilon
        d = trained(noisy, steps, reference, audio * -3 + 1).epsilon
    assert (c - d).abs().max() > 1e-4


def test_audio_processor_gives_each_frame_its_own_window():
    processor = ReferenceAudioAttnProcessor(hidden_size=8, context_dim=4, heads=2, n_ref=1,
                                            window=2)  # fmt: skip
    frames, batch = 3, 2
    # Context per sample: 1 reference token then frames * window audio tokens; token value =
    # 100 * sample + 10 * frame + position in window.
    context = torch.zeros(batch, 1 + frames * 2, 4)
    for b in range(batch):
        for f in range(frames):
            for k in range(2):
                context[b, 1 + f * 2 + k] = 100 * b + 10 * f + k
    rows = context.repeat_interleave(frames, dim=0)  # as diffusers repeats it per frame
    picked = processor.frame_audio(rows)
    assert picked.shape == (batch * frames, 2, 4)
    for row in range(batch * frames):
        b, f = divmod(row, frames)
        assert picked[row, :, 0].tolist() == [100 * b + 10 * f, 100 * b + 10 * f + 1]


def test_audio_windows_hand_computed_with_edge_clamping():
    features = torch.arange(5.0)[:, None] * torch.tensor([[1.0, -1.0]])  # (5, 2)
    windows = audio_windows(features, start=0, frames=3, m=1)
    assert windows.shape == (3, 3, 2)
    assert windows[:, :, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3]]
    last = audio_windows(features, start=3, frames=2, m=2)
    assert last[:, :, 0].tolist() == [[1, 2, 3, 4, 4], [2, 3, 4, 4, 4]]


def test_wrong_window_is_a_clear_error(model):
    noisy, reference, audio = _inputs()
    with pytest.raises(ValueError, match="audio windows of 5 frames, model expects 3"):
        model(noisy, torch.tensor(1), reference, torch.zeros(2, 3, 5, TINY.audio_dim))


def test_save_and_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    again = UniVDM.load(tmp_path / "m")
    assert again.config == model.config
    noisy, reference, audio = _inputs()
    with torch.no_grad():
        loaded = again.eval()(noisy, torch.tensor(3), reference, audio).epsilon
        torch.testing.assert_close(loaded, model(noisy, torch.tensor(3), reference, audio).epsilon)
    with pytest.raises(MissingInputError, match="univdm_config.json missing"):
        UniVDM.load(tmp_path / "nothing")


def test_clip_conditioned_model_needs_embeddings(tmp_path):
    config = UniVDMConfig(**{**TINY.__dict__, "clip_dim": 12})
    clip_model = UniVDM(config).eval()
    noisy, reference, audio = _inputs()
    with torch.no_grad():
        out = clip_model(noisy, torch.tensor(3), reference, audio, image_embeds=torch.randn(2, 12))
    assert out.epsilon.shape == noisy.shape
    with pytest.raises(ValueError, match="image_embeds are required"):
        clip_model(noisy, torch.tensor(3), reference, audio)


def test_clip_image_encoder_loads_a_tiny_local_model(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from pipeline.models.image_encoder import ClipImageEncoder

    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=12)  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path / "clip")
    encoder = ClipImageEncoder(tmp_path / "clip")
    embeds = encoder(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert embeds.shape == (2, 12) and torch.isfinite(embeds).all()
    assert not torch.allclose(embeds[0], embeds[1])
    with pytest.raises(MissingInputError, match="config.json missing"):
        ClipImageEncoder(tmp_path / "none")
    # SVD's image_encoder/ folder holds only model.fp16.safetensors: read, in fp32.
    model = CLIPVisionModelWithProjection.from_pretrained(tmp_path / "clip")
    model.half().save_pretrained(tmp_path / "clip16", variant="fp16")
    assert (tmp_path / "clip16" / "model.fp16.safetensors").is_file()
    assert not (tmp_path / "clip16" / "model.safetensors").exists()
    half = ClipImageEncoder(tmp_path / "clip16")
    assert half.model.dtype == torch.float32
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(half(images), encoder(images), rtol=1e-2, atol=1e-2)


def test_v_parametrisation_outputs_v_and_forward_turns_it_into_epsilon():
    from dataclasses import replace

    torch.manual_seed(0)
    v_model = UniVDM(replace(TINY, parametrisation="v", zero_terminal_snr=True)).eval()
    noisy, reference, audio = _inputs()
    steps = torch.tensor([10, 999])
    with torch.no_grad():
        out = v_model(noisy, steps, reference, audio)
        raw, eps = out.prediction, out.epsilon
        # the UNet sees the DDPM index itself, as with epsilon
        direct = v_model.unet_forward(v_model.build_input(noisy, reference, None, None), steps,
                                      v_model.build_context(audio, None))[:, 1:]  # fmt: skip
    torch.testing.assert_close(raw, direct)
    abar = v_model.noise_input.abar[steps].view(2, 1, 1, 1, 1)
    torch.testing.assert_close(eps, abar.sqrt() * raw + (1 - abar).sqrt() * noisy)
    # At the zero-SNR last step the noise is the input itself (up to sqrt(2**-24) * v).
    assert (eps[1] - noisy[1]).abs().max() < 1e-3


def test_epsilon_model_raw_output_is_its_epsilon(model):
    noisy, reference, audio = _inputs()
    with torch.no_grad():
        out = model(noisy, 5, reference, audio)
    assert isinstance(out, UniVDMOutput) and out.prediction is out.epsilon


def test_the_output_survives_accelerate_s_fp32_conversion():
    # accelerate's mixed-precision forward rebuilds mapping outputs from one dict (under DDP
    # with bf16 this broke the two-process run).
    from accelerate.utils.operations import convert_to_fp32

    out = UniVDMOutput(epsilon=torch.ones(2, dtype=torch.bfloat16),
                       prediction=torch.zeros(2, dtype=torch.bfloat16))  # fmt: skip
    converted = convert_to_fp32(out)
    assert isinstance(converted, UniVDMOutput) and converted.epsilon.dtype == torch.float32
    assert torch.equal(converted.epsilon, torch.ones(2))
    assert torch.equal(converted.prediction, torch.zeros(2))

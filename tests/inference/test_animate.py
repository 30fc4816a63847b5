"""``paha animate`` and the inference core on tiny models the test builds: a real photo it has
never seen, espeak-ng speech in English and Mandarin, and every bad input as a one-line error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile
import torch
import yaml
from diffusers import AutoencoderKL

from pipeline.builders.inference import animator_settings
from pipeline.cli.main import main as paha
from pipeline.config import parse_params
from pipeline.corpus.sample.tts import Voice, synthesize
from pipeline.inference.animator import (
    Animator,
    InputError,
    check_speech,
    crop_reference,
)
from pipeline.io.audio import SAMPLE_RATE, frame_count
from pipeline.io.media import count_frames, probe
from pipeline.models.classifier import SyncClassifier
from pipeline.models.univdm import UniVDM, UniVDMConfig

SIZE, FRAMES, MELS = 32, 4, 8
PARAMS = {"cut": {"size": 256}, "extract": {"n_mels": MELS},
          "train_univdm": {"size": SIZE, "frames": FRAMES, "audio_context": 1},
          "negatives": {"checkpoint_step": 1}, "infer": {"steps": 2}}  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A params file and a models folder (VAE, UniVDM, both classifiers), all tiny."""
    root = tmp_path_factory.mktemp("animate")
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=SIZE)  # fmt: skip
    vae.save_pretrained(root / "models" / "vae", safe_serialization=True)
    model = UniVDM(UniVDMConfig(latent_size=SIZE // 2, frames=FRAMES, audio_dim=MELS,
                                audio_context=1, block_out_channels=[32, 32],
                                cross_attention_dim=32, addition_time_embed_dim=8))  # fmt: skip
    model.save(root / "models" / "univdm" / "final")
    for kind in ("face", "nonface"):
        clf = SyncClassifier.from_univdm(model, width=32, layers=1, heads=4, max_frames=16)
        clf.save(root / "models" / "classifier" / kind / "final")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    from skimage import data

    photo = root / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return root


def _speech(path, text, voice):
    soundfile.write(path, synthesize(text, voice), SAMPLE_RATE)
    return path


def _animate(root, *extra):
    return paha(["animate", "--params", str(root / "params.yaml"), "--models",
                 str(root / "models"), *extra])  # fmt: skip


@pytest.mark.parametrize("language,text,voice,mode", [
    ("en", "Hello, this is a short test of the animation.", Voice("en-us", 50, 160), "dg"),
    ("zh", "你好，这是一个简短的测试。", Voice("cmn", 50, 160), "sg"),
])  # fmt: skip
def test_animate_a_real_photo_with_speech(workspace, tmp_path, capsys, language, text, voice,
                                          mode):  # fmt: skip
    audio = _speech(tmp_path / f"{language}.wav", text, voice)
    out = tmp_path / f"{language}.mp4"
    code = _animate(workspace, "--ref", str(workspace / "astronaut.png"), "--audio", str(audio),
                    "--out", str(out), "--mode", mode, "--seed", "3")  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # It names its model and warns: an untrained VAE's round trip of a photo is far below 20 dB.
    assert f"model: UniVDM {workspace / 'models' / 'univdm' / 'final'}" in captured.err
    assert "warning: " in captured.err and "far from what this model was trained on" in (
        captured.err
    )
    info = probe(out)
    wave, rate = soundfile.read(audio)
    expected = frame_count(len(wave), rate, 25.0)
    assert info.has_audio and info.width == SIZE and info.height == SIZE
    assert count_frames(out) == expected  # one frame per 1/fps of the speech
    assert abs(info.duration_s - len(wave) / rate) < 0.1


def test_animate_reads_other_formats_and_rates(workspace, tmp_path, capsys):
    wav = _speech(tmp_path / "s.wav", "Another format.", Voice("en-us", 50, 160))
    wave, _ = soundfile.read(wav)
    resampled = np.interp(np.arange(0, len(wave), 16000 / 44100), np.arange(len(wave)), wave)
    stereo = np.stack([resampled, resampled], axis=1)
    flac = tmp_path / "s.flac"
    soundfile.write(flac, stereo, 44100)
    out = tmp_path / "f.mp4"
    code = _animate(workspace, "--ref", str(workspace / "astronaut.png"), "--audio", str(flac),
                    "--out", str(out), "--mode", "none")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert count_frames(out) == frame_count(len(resampled), 44100, 25.0)


def test_device_comes_from_the_flag_or_the_params(workspace, tmp_path, capsys):
    """``--device`` overrides ``runtime.device``; a bad one of either is a one-line error."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"runtime": {"device": "tpu"}}))
    speech = _speech(tmp_path / "s.wav", "Where it runs.", Voice("en-us", 50, 160))
    base = ["animate", "--params", str(params), "--models", str(workspace / "models"), "--ref",
            str(workspace / "astronaut.png"), "--audio", str(speech), "--mode", "none"]  # fmt: skip
    for extra, message in (([], f"{params}: runtime.device: 'tpu' is not one of"),
                           (["--device", "cuda:9"], "--device: 'cuda:9' asked for")):  # fmt: skip
        capsys.readouterr()
        assert paha([*base, *extra, "--out", str(tmp_path / "x.mp4")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    out = tmp_path / "cpu.mp4"
    assert paha([*base, "--device", "cpu", "--out", str(out)]) == 0, capsys.readouterr().err
    assert count_frames(out) > 0


def test_bad_inputs_are_one_line_errors(workspace, tmp_path, capsys):
    speech = _speech(tmp_path / "ok.wav", "Fine speech here.", Voice("en-us", 50, 160))
    photo = str(workspace / "astronaut.png")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((128, 128, 3), 200, np.uint8))
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(SAMPLE_RATE * 2), SAMPLE_RATE)
    short = tmp_path / "short.wav"
    soundfile.write(short, np.random.default_rng(0).normal(0, 0.1, 800), SAMPLE_RATE)
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all")
    cases = [
        (["--ref", str(blank), "--audio", str(speech)], "blank.png: no face"),
        (["--ref", str(text), "--audio", str(speech)], "notes.txt: not a readable image"),
        (["--ref", photo, "--audio", str(silent)], "silent.wav: audio is silent"),
        (["--ref", photo, "--audio", str(short)], "short.wav: audio is 0.05 s, shorter"),
        (["--ref", photo, "--audio", str(text)], "notes.txt: unreadable audio"),
        (["--ref", photo, "--audio", str(tmp_path / "none.wav")], "none.wav: audio file not"),
        (["--ref", photo, "--audio", str(speech), "--univdm", str(tmp_path / "gone")],
         "gone: model folder not found"),
    ]  # fmt: skip
    for args, message in cases:
        capsys.readouterr()
        code = _animate(workspace, *args, "--out", str(tmp_path / "x.mp4"), "--mode", "dg")
        err = capsys.readouterr().err.strip()
        assert code == 2, (args, err)
        assert err.count("\n") == 0 and message in err, (message, err)
    assert not (tmp_path / "x.mp4").exists()


def test_reference_is_cropped_around_the_face_like_cut():
    params = parse_params(PARAMS)
    image = np.zeros((200, 400, 3), np.uint8)
    frame, box = crop_reference(image, np.array([250.0, 40.0, 290.0, 80.0]),
                                params.train_univdm.size, params.cut.crop,
                                params.cut.person_scale)  # fmt: skip
    assert frame.shape == (SIZE, SIZE, 3)
    # Side 200 centred on x = 270 -> x0 = 170; the face's upper-third rule -> y0 = 0.
    np.testing.assert_allclose(box, [80 / 200, 40 / 200, 120 / 200, 80 / 200], atol=1e-6)
    with pytest.raises(InputError, match="silent"):
        check_speech(np.zeros(SAMPLE_RATE), "a.wav", 0.1)


def test_generation_is_seeded_and_modes_share_the_noise(workspace):
    settings = animator_settings(parse_params(PARAMS))
    assert settings.size == SIZE and settings.steps == 2 and settings.guidance.rate == 0.5
    root = workspace / "models"
    animator = Animator(
        root / "univdm" / "final",
        root / "vae",
        settings,
        {k: root / "classifier" / k / "final" for k in ("face", "nonface")},
    )
    reference = np.full((SIZE, SIZE, 3), 120, np.uint8)
    features = np.random.default_rng(0).normal(size=(9, MELS)).astype(np.float32)
    box = np.array([0.3, 0.1, 0.7, 0.5], np.float32)
    a = animator.generate(reference, box, features, "none", 5)
    b = animator.generate(reference, box, features, "none", 5)
    assert torch.equal(a.latents, b.latents) and a.segments == 3 and a.frames.shape[0] == 9
    dg = animator.generate(reference, box, features, "dg", 5)
    assert dg.latents.shape == a.latents.shape and not torch.equal(dg.latents, a.latents)
    assert a.seconds_per_segment > 0

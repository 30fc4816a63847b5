import librosa
import numpy as np
import pytest
import soundfile
import torch

from pipeline.errors import MissingInputError
from pipeline.io.audio import (
    Wav2Vec2Features,
    frame_count,
    load_audio,
    mel_features,
    read_audio,
    resample_rows,
)
from pipeline.io.media import MediaError


def test_load_audio_resamples_and_downmixes(tmp_path):
    stereo = np.stack([np.full(48000, 0.5), np.full(48000, -0.1)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 48000)
    wave = load_audio(tmp_path / "s.wav", 16000)
    assert wave.shape == (16000,) and wave.dtype == np.float32
    assert wave[1000:15000].mean() == pytest.approx(0.2, abs=0.01)


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="gone.wav: file not found"):
        load_audio(tmp_path / "gone.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(MediaError, match="junk.wav: unreadable audio"):
        load_audio(tmp_path / "junk.wav")


def test_unreadable_audio_says_what_the_decoders_said_and_what_the_file_is(tmp_path):
    image = tmp_path / "photo.wav"  # a PNG with an audio extension
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(MediaError) as error:
        load_audio(image)
    message = str(error.value)
    assert message.startswith(f"{image}: unreadable audio (soundfile: Format not recognised;")
    assert "72 bytes, begins b'\\x89PNG" in message and "ffprobe:" in message
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.wav: unreadable audio .*0 bytes \(empty file\)"):
        load_audio(empty)
    soundfile.write(tmp_path / "none.wav", np.zeros(0), 16000)
    with pytest.raises(MediaError, match="none.wav: no audio samples"):
        load_audio(tmp_path / "none.wav")


def test_read_audio_keeps_the_rate_or_resamples_like_librosa(tmp_path, video_factory):
    rng = np.random.default_rng(0)
    pcm = (rng.uniform(-0.5, 0.5, (4410, 2)) * 32768).astype(np.int16)
    soundfile.write(tmp_path / "s.wav", pcm, 22050, subtype="PCM_16")
    wave, rate = read_audio(tmp_path / "s.wav")
    assert rate == 22050 and wave.shape == (4410,) and wave.dtype == np.float32
    # 16-bit samples are read exactly (int / 32768) and the channels averaged.
    np.testing.assert_array_equal(wave, (pcm / 32768.0).astype(np.float32).mean(axis=1))
    resampled, rate = read_audio(tmp_path / "s.wav", 16000)
    expected, _ = librosa.load(tmp_path / "s.wav", sr=16000, mono=True)
    assert rate == 16000
    np.testing.assert_array_equal(resampled, expected)
    # A format libsndfile does not read (a video's AAC track) goes through audioread.
    video = video_factory("tone.mp4", seconds=1.0, audio="stereo48k")
    wave, rate = read_audio(video)
    assert rate == 48000 and wave.ndim == 1 and abs(len(wave) - 48000) < 2048


def test_frame_count():
    assert frame_count(16000 * 3, 16000, 25.0) == 75


def test_mel_rows_follow_loudness_frame_by_frame():
    sr, fps = 16000, 25.0
    wave = np.zeros(sr * 2, np.float32)
    wave[sr // 2 : sr] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr)  # 0.5-1.0 s
    features = mel_features(wave, sr, fps, n_frames=50, n_mels=40)
    assert features.shape == (50, 40) and features.dtype == np.float32
    energy = features.max(axis=1)
    assert energy[15:23].min() > energy[:10].max() + 40  # frames 12.5..25 carry the tone
    assert energy[30:].max() < energy[15:23].min() - 40


def test_mel_pads_short_audio_to_the_frame_count():
    features = mel_features(np.zeros(1600, np.float32), 16000, 25.0, n_frames=10, n_mels=8)
    assert features.shape == (10, 8)


def test_resample_rows_keeps_span_and_linear_values():
    source = np.arange(4, dtype=np.float32)[:, None]  # values 0..3 at 4 positions
    out = resample_rows(source, 8)
    assert out.shape == (8, 1)
    expected = np.clip((np.arange(8) + 0.5) * 4 / 8 - 0.5, 0, 3)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-6)


def test_wav2vec2_loader_on_a_tiny_local_model(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer",
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    featurizer = Wav2Vec2Features(tmp_path / "w2v", layers=[1, 3])
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    features = featurizer(wave, 16000, n_frames=25)
    assert features.shape == (25, 32) and np.isfinite(features).all()
    # The two concatenated layers are different hidden states, not copies.
    assert not np.allclose(features[:, :16], features[:, 16:])
    with pytest.raises(ValueError, match="layers \\[7\\] outside 0..3"):
        Wav2Vec2Features(tmp_path / "w2v", layers=[7])
    with pytest.raises(MissingInputError, match="config.json missing"):
        Wav2Vec2Features(tmp_path / "nothing", layers=[1])
    # A folder with only the fp16 variant of the weights is read, in fp32.
    half_model = Wav2Vec2Model.from_pretrained(tmp_path / "w2v").half()
    half_model.save_pretrained(tmp_path / "w16", variant="fp16")
    half = Wav2Vec2Features(tmp_path / "w16", layers=[1, 3])
    assert half.model.dtype == torch.float32
    np.testing.assert_allclose(half(wave, 16000, n_frames=25), features, atol=0.05)

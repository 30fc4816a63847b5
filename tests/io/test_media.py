import numpy as np
import pytest
import soundfile

from pipeline.io.media import (
    MediaError,
    count_frames,
    cut_audio,
    cut_video,
    decoder_message,
    describe_file,
    probe,
    read_frames,
    write_video,
)


def test_probe_reports_streams(video_factory):
    info = probe(video_factory(seconds=2.0, size=64, audio="stereo48k"))
    assert (info.width, info.height) == (64, 64)
    assert info.fps == pytest.approx(25.0)
    assert info.has_audio and info.sample_rate == 48000 and info.channels == 2
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert not info.variable_frame_rate


def test_probe_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="missing.mp4: file not found"):
        probe(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MediaError, match="corrupt.mp4: unreadable media"):
        probe(corrupt)


def test_cut_video_makes_exact_constant_rate_clip_from_variable_rate(video_factory, tmp_path):
    source = video_factory("vfr.mp4", seconds=3.0, vfr=True)
    assert probe(source).variable_frame_rate
    out = tmp_path / "clip.mp4"
    cut_video(source, out, 0.5, 2.5, fps=25.0, size=(32, 48), crop=(8, 8, 48, 48))
    info = probe(out)
    assert (info.width, info.height) == (32, 48)
    assert info.fps == pytest.approx(25.0) and not info.variable_frame_rate
    assert count_frames(out) == 50
    assert not info.has_audio


def test_cut_audio_downmixes_and_resamples_48k_stereo(video_factory, tmp_path):
    source = video_factory("stereo.mp4", seconds=2.0, audio="stereo48k")
    out = tmp_path / "a.wav"
    cut_audio(source, out, 0.25, 1.75, sample_rate=16000)
    wave, rate = soundfile.read(out)
    assert rate == 16000 and wave.ndim == 1
    assert len(wave) == 24000  # exactly 1.5 s
    assert np.abs(wave).max() > 0.05  # the tone survived


def test_cut_audio_pads_past_the_end_with_silence(video_factory, tmp_path):
    source = video_factory("short.mp4", seconds=1.0)
    out = tmp_path / "a.wav"
    cut_audio(source, out, 0.0, 1.5, sample_rate=16000)
    wave, _ = soundfile.read(out)
    assert len(wave) == 24000
    assert np.abs(wave[17000:]).max() == 0.0


def test_cut_audio_without_audio_stream_fails_clearly(video_factory, tmp_path):
    source = video_factory("silent.mp4", audio=None)
    with pytest.raises(MediaError, match="silent.mp4"):
        cut_audio(source, tmp_path / "a.wav", 0.0, 1.0)


def test_write_then_read_round_trip_with_audio(tmp_path):
    frames = np.zeros((10, 32, 64, 3), np.uint8)
    frames[:, :, :32] = (200, 30, 30)
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, 0.3 * np.sin(np.linspace(0, 400 * np.pi, 6400)), 16000)
    out = write_video(iter(frames), tmp_path / "v.mp4", fps=25.0, audio=wav)
    info = probe(out)
    assert info.has_audio and info.width == 64 and info.height == 32
    back = read_frames(out)
    assert back.shape == (10, 32, 64, 3)
    assert abs(int(back[0, 16, 5, 0]) - 200) < 12 and back[0, 16, 50].max() < 12
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_lossless_video_decodes_bit_exact_where_420_blurs_a_one_pixel_lip(tmp_path):
    # A 1 px red "lip" line on skin, as at 64 px: 4:2:0 halves its colour, lossless keeps it.
    rng = np.random.default_rng(0)
    frames = np.full((6, 64, 64, 3), (205, 160, 130), np.uint8)
    frames[:, 40] = (150, 40, 50)
    frames[:, 50:] = rng.integers(0, 256, (6, 14, 64, 3), dtype=np.uint8)
    lossless = read_frames(write_video(iter(frames), tmp_path / "l.mp4", 25.0, lossless=True))
    assert lossless.shape == frames.shape
    np.testing.assert_array_equal(lossless, frames)
    lossy = read_frames(write_video(iter(frames), tmp_path / "y.mp4", 25.0))
    assert np.abs(lossy[:, 40].astype(int) - frames[:, 40]).max() > 20


def test_write_video_rejects_mismatched_frames_and_leaves_nothing(tmp_path):
    frames = [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)]
    with pytest.raises(MediaError, match="frame of shape"):
        write_video(frames, tmp_path / "v.mp4", fps=25.0)
    assert list(tmp_path.iterdir()) == []


def test_read_frames_of_a_corrupt_file_fails_clearly(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="bad.mp4: cannot decode video"):
        read_frames(bad)


def test_describe_file_says_what_a_file_looks_like(tmp_path, video_factory):
    text = tmp_path / "notes.wav"
    text.write_text("hello, not audio")
    assert describe_file(text).startswith("16 bytes, begins b'hello, not a', ffprobe: ")
    video = describe_file(video_factory(seconds=1.0, audio="mono16k"))
    assert "ffprobe: mov,mp4,m4a,3gp,3g2,mj2 with video h264, audio aac" in video
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert describe_file(tmp_path / "empty.mp4") == "0 bytes (empty file)"
    assert describe_file(tmp_path / "gone.mp4").startswith("cannot read the file")


def test_decoder_message_is_one_readable_line():
    raw = ("[21:55:16] /github/workspace/src/video/video_reader.cc:486: Error: av_read_frame "
           "failed with 1094995529\n\nStack trace ...")  # fmt: skip
    assert decoder_message(RuntimeError(raw)) == (
        "av_read_frame failed with 1094995529 (invalid data: the file is truncated or corrupt)"
    )
    assert decoder_message(RuntimeError("")) == "RuntimeError"

"""Sync-C / Sync-D: MFCCs, crops, windows, the offset search, a known delay on the corpus."""

import shutil

import numpy as np
import pytest
import torch
from scipy.fft import dct

from pipeline import keypoints as kp
from pipeline.metrics.sync import (
    SyncScores,
    audio_windows,
    crop_rectangle,
    embed_windows,
    evaluate_sync,
    face_crops,
    mean_sync,
    mel_filterbank,
    mfcc_features,
    offset_distances,
    sync_distances,
    sync_scores,
    usable_windows,
    video_windows,
)
from pipeline.models.syncnet import SyncNet

EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------- MFCC
def test_mfcc_has_13_rows_at_100_hz():
    rng = np.random.default_rng(0)
    assert mfcc_features(rng.normal(size=16000) * 0.1, 16000).shape == (13, 99)
    # n = 1 + ceil((40000 - 400) / 160) = 249; a wave shorter than a frame gives one column.
    assert mfcc_features(rng.normal(size=40000) * 0.1, 16000).shape == (13, 249)
    assert mfcc_features(np.ones(100), 16000).shape == (13, 1)


def test_mfcc_of_an_impulse_by_hand():
    """x = [1000, 0, 0, ...] (int16): after pre-emphasis frame 0 is [1000, -970, 0, ...]."""
    wave = np.zeros(800, dtype=np.int16)
    wave[0] = 1000
    mfcc = mfcc_features(wave, 16000).astype(np.float64)
    k = np.arange(257)
    power = 1000.0**2 * (1 + 0.97**2 - 2 * 0.97 * np.cos(2 * np.pi * k / 512)) / 512
    # Energy: the cosines sum to 0 over k = 0..256, so E = 257 (1 + 0.97^2) 10^6 / 512.
    assert mfcc[0, 0] == pytest.approx(np.log(257 * (1 + 0.97**2) * 1e6 / 512), rel=1e-6)
    expected = dct(np.log(mel_filterbank(26, 512, 16000) @ power), type=2, norm="ortho")[:13]
    expected *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    np.testing.assert_allclose(mfcc[1:, 0], expected[1:], rtol=1e-5)
    # Frame 1 (samples 160..559) is silent: every log energy is log(eps), so the DCT of the
    # constant vector is zero beyond c0, and c0 = log(eps).
    assert mfcc[0, 1] == pytest.approx(np.log(EPS))
    np.testing.assert_allclose(mfcc[1:, 1], 0.0, atol=1e-4)


def test_float_waves_are_scaled_to_16_bit():
    rng = np.random.default_rng(1)
    ints = rng.integers(-3000, 3000, 4000).astype(np.int16)
    np.testing.assert_allclose(mfcc_features(ints / 32768.0, 16000), mfcc_features(ints, 16000),
                               rtol=1e-6, atol=1e-5)  # fmt: skip


def test_mfcc_equals_python_speech_features():
    """The official SyncNet's recipe is ``python_speech_features.mfcc`` on the int16 samples."""
    psf = pytest.importorskip("python_speech_features", reason="the `dev` extra installs it")
    rng = np.random.default_rng(2)
    t = np.arange(16000 + 123) / 16000  # not a whole number of 10 ms steps: the last frame pads
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    ints = np.round((tone + 0.02 * rng.normal(size=t.size)) * 16000).astype(np.int16)
    ints[4000:6000] = 0  # silent frames: the eps floors of the energies
    expected = psf.mfcc(ints, 16000).T  # (13, n) float64
    ours = mfcc_features(ints, 16000)
    assert ours.shape == expected.shape, ours.shape
    np.testing.assert_array_equal(ours, expected.astype(np.float32))
    np.testing.assert_allclose(mfcc_features(ints / 32768.0, 16000), expected, rtol=1e-5,
                               atol=1e-4)  # fmt: skip


def test_filterbank_by_hand():
    bank = mel_filterbank(26, 512, 16000)
    assert bank.shape == (26, 257)
    # Filter 0: mel points 0 and 2595 log10(1 + 8000/700) / 27 -> bins floor(513 hz / 16000).
    mel1 = 2595 * np.log10(1 + 8000 / 700) / 27
    top = int(np.floor(513 * 700 * (10 ** (mel1 / 2595) - 1) / 16000))
    assert top == 2 and bank[0, 0] == 0 and bank[0, top] == 1.0 and bank[0, top + 1] == 0.5
    assert np.allclose(bank.max(axis=1), 1.0)


def test_mfcc_rejects_bad_waves():
    with pytest.raises(ValueError, match="1-D"):
        mfcc_features(np.zeros((2, 100)), 16000)
    with pytest.raises(ValueError, match="NaN"):
        mfcc_features(np.array([0.0, np.nan, 0.0]), 16000)


# ---------------------------------------------------------------------------------- crops
def test_face_crop_inside_the_frame_is_the_official_rectangle():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)
    # bs = 10, cs = 0.5: rows 50 - 10 .. 50 + 20, columns 50 - 15 .. 50 + 15 (side 30).
    assert crop_rectangle((40, 40, 60, 60), 0.5) == (40, 70, 35, 65)
    crops = face_crops(frames, (40, 40, 60, 60), 0.5, 30)
    assert np.array_equal(crops, frames[:, 40:70, 35:65])
    # The longer side sets the square: a 20 x 10 box is treated as 20 x 20 around its centre.
    assert crop_rectangle((40, 45, 60, 55), 0.5) == (40, 70, 35, 65)


def test_face_crop_outside_the_frame_is_grey_110():
    frames = np.full((1, 50, 50, 3), 7, dtype=np.uint8)
    r0, r1, c0, c1 = crop_rectangle((0, 0, 20, 20), 0.5)
    assert (r0, r1, c0, c1) == (0, 30, -5, 25)
    crop = face_crops(frames, (0, 0, 20, 20), 0.5, 30)[0]
    assert (crop[:, :5] == 110).all() and (crop[:, 5:] == 7).all()
    assert face_crops(frames, (0, 0, 20, 20), 0.5, 15).shape == (1, 15, 15, 3)
    with pytest.raises(ValueError, match="face box"):
        face_crops(frames, (10, 10, 5, 20), 0.4, 16)
    with pytest.raises(ValueError, match="face box"):
        face_crops(frames, (np.nan, 0, 5, 5), 0.4, 16)


# ---------------------------------------------------------------------------------- windows
def test_video_windows_are_bgr_5_frame_stacks():
    crops = np.arange(7 * 2 * 2 * 3, dtype=np.uint8).reshape(7, 2, 2, 3)
    windows = video_windows(crops)
    assert windows.shape == (3, 3, 5, 2, 2) and windows.dtype == torch.float32
    # Window 1, channel 0 (blue), frame 2 of the window = crop 3's RGB channel 2.
    assert torch.equal(windows[1, 0, 2], torch.from_numpy(crops[3, :, :, 2]).float())
    assert torch.equal(windows[2, 2, 4], torch.from_numpy(crops[6, :, :, 0]).float())


def test_audio_windows_step_4_columns_and_pad_with_zeros():
    mfcc = np.tile(np.arange(24, dtype=np.float32), (13, 1))
    windows = audio_windows(mfcc, 3)
    assert windows.shape == (3, 1, 13, 20)
    assert torch.equal(windows[1, 0, 5], torch.arange(4, 24).float())  # columns 4..23
    # Window 2 needs columns 8..27; 24..27 do not exist and are zeros.
    assert torch.equal(windows[2, 0, 0, :16], torch.arange(8, 24).float())
    assert (windows[2, 0, :, 16:] == 0).all()


# ---------------------------------------------------------------------------------- scores
def test_offset_distances_by_hand():
    video = np.array([[1.0], [2.0]])
    audio = np.array([[1.0], [2.0]])
    # Padded audio [0, 1, 2, 0]: k=0 -> |1-0|, |2-1|; k=1 -> 0, 0; k=2 -> |1-2|, |2-0|.
    distances = offset_distances(video, audio, 1)
    np.testing.assert_allclose(distances, [1.0, 0.0, 1.5], atol=2e-6)
    scores = sync_scores(distances, 1)
    assert scores.offset == 0
    assert scores.min_dist == pytest.approx(0.0, abs=2e-6)
    assert scores.confidence == pytest.approx(1.0, abs=2e-6)


@pytest.mark.parametrize("shift", [-5, -2, 0, 3, 6])
def test_a_known_shift_is_recovered_with_positive_confidence(shift):
    rng = np.random.default_rng(3)
    n, e = 40, 8
    sequence = rng.normal(size=(n + 20, e)) + 5.0
    video = sequence[10 : 10 + n]
    # Audio leading by ``shift`` frames: audio window j shows what video window j + shift shows,
    # so video window i matches audio window i - shift: offset = shift.
    audio = sequence[10 + shift : 10 + shift + n]
    scores = sync_scores(offset_distances(video, audio, 10), 10)
    assert scores.offset == shift and scores.confidence > 0.5
    # At the true offset the matched windows are at distance 0 and the |shift| windows whose
    # partner falls off the end meet the zero padding, at distance |v_i|.
    unmatched = video[:shift] if shift >= 0 else video[n + shift :]
    assert scores.min_dist == pytest.approx(np.linalg.norm(unmatched, axis=1).sum() / n, abs=1e-5)


def test_flat_distances_have_zero_confidence():
    scores = sync_scores(np.full(31, 2.5), 15)
    assert scores == SyncScores(offset=15, min_dist=2.5, confidence=0.0)
    with pytest.raises(ValueError, match=r"\(31,\)"):
        sync_scores(np.ones(30), 15)
    with pytest.raises(ValueError, match="embeddings"):
        offset_distances(np.ones((4, 2)), np.ones((5, 2)), 3)


def test_mean_sync_is_the_mean_over_videos():
    scores = [SyncScores(2, 7.0, 3.0), SyncScores(-1, 8.0, 5.0)]
    assert mean_sync(scores) == {"sync_c": 4.0, "sync_d": 7.5, "abs_offset": 1.5, "videos": 2}
    with pytest.raises(ValueError, match="at least one"):
        mean_sync([])


# ---------------------------------------------------------------------------------- a net
def test_evaluate_sync_follows_the_pieces():
    torch.manual_seed(0)
    model = SyncNet(width=0.05, size=32, embedding=8)
    model.train()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (14, 64, 64, 3), dtype=np.uint8)
    wave = rng.normal(size=14 * 640).astype(np.float32) * 0.1
    box = (16, 16, 48, 48)
    # Official count: min(14 frames, 14 * 640 / 640) - 5 = 9 windows.
    assert usable_windows(14, len(wave)) == 9
    distances = sync_distances(model, frames, wave, 16000, box, 0.4, vshift=3, batch_size=4)
    assert model.training  # the mode is restored
    video, audio = embed_windows(model, face_crops(frames, box, 0.4, 32),
                                 mfcc_features(wave, 16000), 9, batch_size=9)  # fmt: skip
    assert video.shape == audio.shape == (9, 8)
    np.testing.assert_allclose(distances, offset_distances(video, audio, 3), rtol=1e-5)
    scores, expected = evaluate_sync(model, frames, wave, 16000, box, 0.4, vshift=3), sync_scores(
        distances, 3)  # fmt: skip
    assert scores.offset == expected.offset
    assert scores.min_dist == pytest.approx(expected.min_dist, rel=1e-5)
    assert scores.confidence == pytest.approx(expected.confidence, rel=1e-4)
    with pytest.raises(ValueError, match="too short"):
        sync_distances(model, frames[:5], wave, 16000, box, 0.4)
    with pytest.raises(ValueError, match="16000"):
        sync_distances(model, frames, wave, 22050, box, 0.4)


# ---------------------------------------------------------------------------------- corpus
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
@pytest.mark.parametrize("delay", [0, 4, -4])
def test_an_audio_delay_is_recovered_on_a_sample_corpus_clip(sample_clip, delay):
    """The corpus's mouth follows the speech envelope; an oracle embedding outside any network
    (mouth brightness per frame vs. MFCC energy per frame) must find a delay we apply."""
    frames, wave, box, mouth = sample_clip
    noise = np.random.default_rng(9).normal(size=abs(delay) * 640).astype(np.float32) * 3e-4
    # Delay by d frames: d x 640 samples of the corpus's noise floor in front (or cut).
    delayed = np.concatenate([noise, wave])[: len(wave)] if delay >= 0 else np.concatenate(
        [wave[-delay * 640 :], noise])  # fmt: skip
    crops = face_crops(frames, box, 0.4, 48)
    r0, r1, c0, c1 = mouth
    # The opening mouth shows the teeth band: the mouth region gets brighter.
    brightness = crops[:, r0:r1, c0:c1].astype(np.float64).mean(axis=(1, 2, 3))
    energy = mfcc_features(delayed, 16000)[0]
    n = usable_windows(len(frames), len(delayed))
    per_frame = energy[: 4 * (n + 4)].reshape(n + 4, 4).mean(axis=1)

    def embed(signal):
        # Standardised, then moved away from the origin: the zero padding of the offset search
        # stands for "no audio" and must be far from every real window, as for SyncNet.
        z = (signal - signal.mean()) / signal.std() + 10.0
        return np.stack([z[i : i + 5] for i in range(n)])

    scores = sync_scores(offset_distances(embed(brightness[: n + 4]), embed(per_frame), 15), 15)
    assert scores.offset == -delay  # audio delayed by d frames reads as offset -d
    assert scores.confidence > 1.0


@pytest.fixture(scope="module")
def sample_clip():
    """One rendered sample-corpus sentence at 128 px: frames, 16 kHz wave, the face box of
    frame 0 (from its face keypoints) and the mouth's rows/columns in 48 px crops."""
    from pipeline.corpus.sample import motion, tts
    from pipeline.corpus.sample import render as sample
    from pipeline.corpus.sample.drawing import background, draw
    from pipeline.corpus.sample.figure import figure

    profile = sample._PROFILES["en"][0]
    text = "Heavy rain is expected across the northern region for the rest of the week."
    speech = tts.synthesize(text, profile.voice, 16000)
    rng = np.random.default_rng(0)
    lead = int(0.4 * 16000)
    n_frames = int(np.ceil((len(speech) + 2 * lead) / 640))
    wave = (rng.normal(size=n_frames * 640) * sample.NOISE_FLOOR).astype(np.float32)
    wave[lead : lead + len(speech)] += speech
    track = motion.audio_motion(wave, 16000, 25.0, n_frames, profile.style, rng)
    ch, size = profile.character, 128
    figures = [figure(ch, c, size, profile.style.front_hand) for c in track.controls]
    bg = background(ch, size)
    frames = np.stack([draw(ch, f, bg) for f in figures])
    face = figures[0].keypoints[kp.FACE]
    box = (face[:, 0].min(), face[:, 1].min(), face[:, 0].max(), face[:, 1].max())
    r0, r1, c0, c1 = crop_rectangle(box, 0.4)
    lips = face[48:68]  # outer and inner lip points of the 68-point face
    row = int((lips[:, 1].mean() - r0) * 48 / (r1 - r0))
    col = int((lips[:, 0].mean() - c0) * 48 / (c1 - c0))
    return frames, wave, box, (row - 4, row + 5, col - 8, col + 9)


def test_face_track_fills_gaps_and_median_filters_like_syncnet_python():
    from pipeline.metrics.sync import smooth_face_track

    # A still 10 px face, one wild detection (frame 5) and two frames without a face (8, 9).
    boxes = np.tile([10.0, 0.0, 20.0, 10.0], (20, 1))
    boxes[5] = [40.0, 30.0, 80.0, 70.0]
    boxes[8:10] = np.nan
    track = smooth_face_track(boxes, kernel=5)
    assert track.shape == (20, 4)
    # The median over 5 frames removes the outlier; medfilt's zero padding bends the 2 end frames.
    np.testing.assert_allclose(track[2:18], np.tile([10.0, 0.0, 20.0, 10.0], (16, 1)))
    # A face drifting 1 px a frame: the missing frames take the box between their neighbours'.
    drifting = np.array([[t, 0.0, t + 10.0, 10.0] for t in range(6)])
    drifting[2:4] = np.nan
    np.testing.assert_allclose(smooth_face_track(drifting, kernel=1)[:, 0], np.arange(6.0))
    with pytest.raises(ValueError, match="no frame has a face"):
        smooth_face_track(np.full((4, 4), np.nan))


def test_face_crops_follow_a_moving_box():
    from pipeline.metrics.sync import face_crops

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    moved = np.roll(frame, 7, axis=1)  # the picture shifted 7 px right
    boxes = np.array([[20.0, 20.0, 36.0, 36.0], [27.0, 20.0, 43.0, 36.0]])
    crops = face_crops(np.stack([frame, moved]), boxes, 0.4, 32)
    np.testing.assert_array_equal(crops[0], crops[1])  # the box moved with the face
    still = face_crops(np.stack([frame, moved]), boxes[0], 0.4, 32)
    assert not np.array_equal(still[0], still[1])  # one box for both: the face slid

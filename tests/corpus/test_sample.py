"""The rendered sample corpus: tables, timing, determinism, audio-driven motion, detectability."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from pipeline import keypoints as kp
from pipeline.config import SampleCorpusParams
from pipeline.corpus.sample import motion, tts
from pipeline.corpus.sample import render as sample
from pipeline.corpus.sample.drawing import background, draw
from pipeline.corpus.sample.figure import Controls, figure
from pipeline.io import tables
from pipeline.io.media import count_frames, cut_audio, probe

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="needs espeak-ng and ffmpeg",
)

PARAMS = SampleCorpusParams(n_speakers=2, clips_per_speaker=2, size=128)
FPS = 25.0
UPPER_LIP, LOWER_LIP = kp.FACE.start + 62, kp.FACE.start + 66  # inner-lip midpoints


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[sample.SampleCorpus, Path]:
    out = tmp_path_factory.mktemp("sample") / "raw"
    return sample.render_sample_corpus(PARAMS, seed=3, fps=FPS, out_dir=out), out


def _poses(corpus: sample.SampleCorpus, video_id: str) -> np.ndarray:
    rows = corpus.poses[corpus.poses.video_id == video_id].sort_values("frame")
    return np.stack(rows.keypoints.to_numpy()).reshape(len(rows), kp.N_KEYPOINTS, 3)


def _audio(video: str, tmp_path: Path) -> np.ndarray:
    """The mp4's audio track as 16 kHz mono float samples."""
    wav = tmp_path / (Path(video).stem + ".wav")
    cut_audio(video, wav, 0.0, probe(video).duration_s, sample_rate=16000)
    with wave.open(str(wav)) as reader:
        data = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return data.astype(np.float64) / 32768.0


# ------------------------------------------------------------------ tables and files
def test_raw_table_rows_speakers_and_schema(corpus):
    result, out = corpus
    raw = result.raw
    assert list(raw.columns) == tables.RAW.names
    assert list(raw.speaker.unique()) == ["sample_en_1", "sample_zh_1"]
    assert list(raw.language.unique()) == ["en", "zh"]
    assert list(raw.clip_id) == [
        "sample_en_1_000",
        "sample_en_1_001",
        "sample_zh_1_000",
        "sample_zh_1_001",
    ]
    assert (raw.video_id == raw.speaker).all()
    assert set(raw.source) == {"sample"} and set(raw.status) == {"ok"}
    assert set(raw.url) == {""} and set(raw.reason) == {""}
    assert set(raw.path) == {str(out / "sample_en_1.mp4"), str(out / "sample_zh_1.mp4")}
    # Both tables convert to their Arrow schemas (what the stage writes).
    assert tables.to_arrow(raw, tables.RAW).num_rows == 4
    assert tables.to_arrow(result.poses, tables.RAW_POSE).schema.equals(tables.RAW_POSE)


def test_clip_intervals_in_bounds_disjoint_and_inside_video(corpus):
    result, _ = corpus
    for path, group in result.raw.groupby("path"):
        info = probe(path)
        assert info.has_audio and info.sample_rate == 16000 and info.channels == 1
        assert (info.width, info.height) == (128, 128) and info.fps == pytest.approx(FPS)
        starts, ends = group.start_s.to_numpy(), group.end_s.to_numpy()
        durations = ends - starts
        assert np.all(durations >= PARAMS.min_clip_s) and np.all(durations <= PARAMS.max_clip_s)
        assert starts[0] > 0 and np.all(starts[1:] >= ends[:-1] + 0.1)  # gaps between clips
        assert ends[-1] <= info.n_frames / FPS


def test_poses_cover_every_frame_with_133_keypoints(corpus):
    result, _ = corpus
    for video_id, path in result.raw.groupby("video_id").path.first().items():
        poses = _poses(result, video_id)
        frames = result.poses[result.poses.video_id == video_id].frame.to_numpy()
        n = count_frames(path)
        assert len(poses) == n and np.array_equal(np.sort(frames), np.arange(n))
        assert all(len(k) == kp.N_KEYPOINTS * 3 for k in result.poses.keypoints.head(5))
        kp.validate_pose(poses)
        scores = poses[..., 2]
        visible = scores > 0
        # Visible points lie in the frame; legs and feet are never visible; face always is.
        assert np.all((poses[..., :2][visible] >= 0) & (poses[..., :2][visible] <= 127))
        assert np.all(scores[:, 13:23] == 0)
        assert np.all(scores[:, kp.FACE].mean(axis=1) > 0.8)
        assert np.all(scores[:, [5, 6, 9, 10]] > 0.3)  # shoulders and wrists in the frame
        # COCO left = the person's left = image right.
        assert np.all(poses[:, 5, 0] > poses[:, 6, 0])
        assert np.all(poses[:, kp.LEFT_HAND, 0].mean(1) > poses[:, kp.RIGHT_HAND, 0].mean(1))


def test_same_seed_same_corpus_other_seed_differs(corpus, tmp_path):
    result, out = corpus
    again = sample.render_sample_corpus(PARAMS, seed=3, fps=FPS, out_dir=tmp_path / "a")
    assert again.raw.drop(columns="path").equals(result.raw.drop(columns="path"))
    assert np.array_equal(np.stack(again.poses.keypoints), np.stack(result.poses.keypoints))
    for name in ("sample_en_1.mp4", "sample_zh_1.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes()
    other = sample.render_sample_corpus(PARAMS, seed=4, fps=FPS, out_dir=tmp_path / "b")
    assert not np.array_equal(
        np.stack(other.poses.keypoints[:50]), np.stack(result.poses.keypoints[:50])
    )


# ------------------------------------------------------------------ audio-driven motion
def test_mouth_opening_follows_the_audio_envelope(corpus, tmp_path):
    result, _ = corpus
    for video_id, path in result.raw.groupby("video_id").path.first().items():
        poses = _poses(result, video_id)
        gap = np.linalg.norm(poses[:, LOWER_LIP, :2] - poses[:, UPPER_LIP, :2], axis=1)
        envelope = motion.frame_rms(_audio(path, tmp_path), 16000, FPS, len(poses))
        assert np.corrcoef(gap, envelope)[0, 1] > 0.5
        # Closed in the silent lead-in, open while speaking.
        assert gap[:5].max() < 0.5 and gap.max() > 3


def test_hand_scores_drop_when_hands_move_fast(corpus):
    result, _ = corpus
    poses = _poses(result, "sample_en_1")
    wrist = poses[:, kp.RIGHT_HAND.start, :2]
    speed = np.linalg.norm(np.gradient(wrist, axis=0), axis=1) * 256 / PARAMS.size
    score = poses[:, kp.RIGHT_HAND.start, 2]
    fast, slow = speed > np.percentile(speed, 90), speed < np.percentile(speed, 50)
    assert speed.max() > 4  # beats move the hands several pixels per frame
    assert score[slow].mean() == pytest.approx(0.95, abs=0.02)
    assert score[fast].mean() < score[slow].mean() - 0.15
    assert score.min() >= motion.SCORE_MIN_FAST - 1e-6


def test_speed_scores_from_still_to_fast():
    still = np.zeros((5, 1, 2))
    fast = np.cumsum(np.full((5, 1, 2), [8.0, 0.0]), axis=0)  # 8 px per frame at 256 px
    assert np.allclose(motion.speed_scores(still, 256), motion.SCORE)
    assert np.allclose(motion.speed_scores(fast, 256), motion.SCORE_MIN_FAST)
    assert np.allclose(motion.speed_scores(fast / 2, 128), motion.SCORE_MIN_FAST)


def test_hand_over_the_face_lowers_face_scores():
    ch = sample._PROFILES["en"][0].character
    figures = [figure(ch, Controls(), 256) for _ in range(3)]
    free = motion.ground_truth(figures, 256, finger_width=5)
    nose = figures[1].keypoints[0]
    for fig in figures:  # move the right hand (drawn in front) onto the nose
        hand = fig.keypoints[kp.RIGHT_HAND]
        fig.keypoints[kp.RIGHT_HAND] = hand - hand.mean(axis=0) + nose
    covered = motion.ground_truth(figures, 256, finger_width=5)
    occluded = pytest.approx(motion.SCORE_OCCLUDED, abs=1e-6)
    assert free[1, 0, 2] == pytest.approx(0.95, abs=1e-6) and covered[1, 0, 2] == occluded
    assert covered[1, kp.FACE.start + 30, 2] == occluded  # nose tip
    assert covered[1, kp.FACE.start + 8, 2] == pytest.approx(0.95, abs=1e-6)  # chin visible


def test_long_hair_hides_the_ears():
    short = sample._PROFILES["en"][0].character
    long = sample._PROFILES["en"][1].character
    assert (short.hair_style, long.hair_style) == ("short", "long")
    ears = [kp.BODY_INDEX["left_ear"], kp.BODY_INDEX["right_ear"]]
    for ch, expected in ((short, 0.9), (long, motion.SCORE_OCCLUDED)):
        figures = [figure(ch, Controls(), 256) for _ in range(2)]
        truth = motion.ground_truth(figures, 256, finger_width=5)
        assert truth[0, ears, 2] == pytest.approx([expected, expected], abs=1e-6)


def test_onsets_trigger_nods_and_beats():
    sr, fps = 16000, 25.0
    t = np.arange(int(4 * sr)) / sr
    # A 0.3 s syllable every second from 1 s, with smooth (Hann) edges so only starts are onsets.
    phase = t % 1.0
    envelope = np.where((phase < 0.3) & (t > 0.5), np.sin(np.pi * phase / 0.3) ** 2, 0.0)
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * envelope).astype(np.float32)
    style = motion.GestureStyle(both_prob=1.0)
    track = motion.audio_motion(audio, sr, fps, 100, style, np.random.default_rng(0))
    for start in (25, 50, 75):
        assert np.min(np.abs(track.onset_frames - start)) <= 3
    wrist_y = np.array([c.wrist_r[1] for c in track.controls])
    head_y = np.array([c.head_dy for c in track.controls])
    onset = track.onset_frames[np.argmin(np.abs(track.onset_frames - 50))]
    # A beat pushes the wrists down (larger y) at the onset, relative to 0.3 s before, and the
    # head nods.
    assert wrist_y[onset] > wrist_y[onset - 8] + 0.01
    assert head_y[onset + 1] > head_y[onset - 8] + 0.003


# ------------------------------------------------------------------ looks and detectability
def test_speakers_look_different():
    size = 96
    means = []
    for _speaker, language, k in sample.speaker_ids(8):
        ch = sample._PROFILES[language][k].character
        image = draw(ch, figure(ch, Controls(), size), background(ch, size))
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        means.append(image.reshape(-1, 3).mean(axis=0))
    means = np.array(means)
    distances = np.abs(means[:, None] - means[None]).sum(-1)
    assert distances[~np.eye(8, dtype=bool)].min() > 10


def test_speaker_ids_cycle_languages():
    ids = sample.speaker_ids(5)
    assert [i[0] for i in ids] == [
        "sample_en_1",
        "sample_zh_1",
        "sample_en_2",
        "sample_zh_2",
        "sample_en_3",
    ]
    assert len(sample.load_sentences("en")) >= 20 and len(sample.load_sentences("zh")) >= 20


def test_mediapipe_sees_the_face_and_the_body():
    mp = pytest.importorskip("mediapipe")
    size = 256
    for language in ("en", "zh"):
        ch = sample._PROFILES[language][0].character
        fig = figure(ch, Controls(mouth_open=0.4), size)
        image = draw(ch, fig, background(ch, size))
        with mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.5
        ) as detector:
            found = detector.process(image).detections
        assert found, f"no face found for {language}"
        box = found[0].location_data.relative_bounding_box
        nose = fig.keypoints[0] / size
        assert box.xmin < nose[0] < box.xmin + box.width
        assert box.ymin < nose[1] < box.ymin + box.height
    with mp.solutions.holistic.Holistic(static_image_mode=True) as holistic:
        result = holistic.process(image)
    assert result.pose_landmarks is not None
    landmarks = result.pose_landmarks.landmark
    for coco, mediapipe_index in ((5, 11), (6, 12), (9, 15), (10, 16)):
        found = np.array([landmarks[mediapipe_index].x, landmarks[mediapipe_index].y]) * size
        assert np.linalg.norm(found - fig.keypoints[coco]) < 15


# ------------------------------------------------------------------ clip planning and TTS
class _FakeSpeech:
    """Stands in for espeak: sentence i lasts ``lengths[i]`` seconds."""

    def __init__(self, lengths):
        self.sentences = [f"s{i}" for i in range(len(lengths))]
        self.lengths = lengths

    def __call__(self, i):
        n = int(self.lengths[i] * sample.SAMPLE_RATE)
        return np.full(n, 0.1, np.float32)


@pytest.mark.parametrize(
    "lengths, min_s, max_s",
    [
        ([4.0, 4.5, 3.8, 5.0], 3.0, 6.0),  # the usual case
        ([1.0, 1.2, 0.9], 3.0, 6.0),  # short sentences: two per clip
        ([0.5, 0.6], 3.0, 6.0),  # still too short: padded with silence
        ([8.0, 9.0], 2.0, 4.0),  # too long: cut
    ],
)
def test_planned_clips_fit_the_duration_bounds(lengths, min_s, max_s):
    rng = np.random.default_rng(0)
    clips = sample._plan_clips(_FakeSpeech(lengths), 4, min_s, max_s, rng)
    audio, n_frames, intervals = sample._assemble(clips, FPS, rng)
    assert len(audio) == round(n_frames * sample.SAMPLE_RATE / FPS)
    for k, (start, end) in enumerate(intervals):
        assert min_s <= end - start <= max_s
        assert start > 0 and end < n_frames / FPS
        if k:
            assert start > intervals[k - 1][1]
    # Silence between clips is near-silent but not digital zero (finite SNR downstream).
    gap = audio[: int(0.3 * sample.SAMPLE_RATE)]
    assert 0 < np.abs(gap).max() < 0.01


def test_tts_speaks_and_fails_loudly(monkeypatch):
    voice = tts.Voice("en-us", 50, 170)
    audio = tts.synthesize("Good evening.", voice)
    assert audio.dtype == np.float32 and 0.3 < len(audio) / 16000 < 3
    assert np.abs(audio).max() == pytest.approx(0.5, abs=1e-3)
    assert np.array_equal(audio, tts.synthesize("Good evening.", voice))
    with pytest.raises(RuntimeError, match="espeak-ng"):
        tts.synthesize("Hello.", tts.Voice("zzz-nonexistent", 50, 170))
    monkeypatch.setattr(tts, "ESPEAK", "espeak-ng-not-installed")
    with pytest.raises(RuntimeError, match="espeak-ng-not-installed"):
        tts.synthesize("Hello.", voice)

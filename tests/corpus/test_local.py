"""The ``local`` corpus source: a folder of tiny videos made at test time, with and without CSV."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import LocalParams
from pipeline.corpus.local import local_corpus, safe_id
from pipeline.errors import InputError
from pipeline.io.tables import RAW


@pytest.fixture
def videos_dir(tmp_path, video_factory):
    """``videos/`` with two good videos, a corrupt one and files that are not videos."""
    folder = tmp_path / "videos"
    folder.mkdir()
    video_factory("videos/anchor_a.mp4", seconds=2.0)
    video_factory("videos/anchor_b.mkv", seconds=3.0, audio=None)
    (folder / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    (folder / "notes.txt").write_text("not a video")
    (folder / "._anchor_a.mp4").write_bytes(b"macOS metadata twin")  # hidden: skipped
    return folder


def test_whole_videos_without_csv(videos_dir, tmp_path):
    params = LocalParams(videos_dir=str(videos_dir), language="zh")
    frame = local_corpus(params, tmp_path / "unused", fps=25.0)

    assert list(frame.columns) == RAW.names
    assert list(frame["clip_id"]) == [
        "anchor_a_anchor_a_000",
        "anchor_b_anchor_b_000",
        "broken_broken_000",
    ]
    assert list(frame["speaker"]) == ["anchor_a", "anchor_b", "broken"]
    assert list(frame["status"]) == ["ok", "ok", "failed"]  # no audio is still ok here
    assert frame["start_s"].tolist() == [0.0, 0.0, 0.0]
    assert frame["end_s"].iloc[0] == pytest.approx(2.0, abs=0.1)
    assert frame["end_s"].iloc[1] == pytest.approx(3.0, abs=0.1)
    assert "broken.mp4" in frame["reason"].iloc[2] and "unreadable" in frame["reason"].iloc[2]
    assert frame["path"].iloc[0] == str(videos_dir / "anchor_a.mp4")
    assert set(frame["source"]) == {"local"} and set(frame["language"]) == {"zh"}
    assert not (tmp_path / "unused").exists()  # nothing is copied


def test_params_speaker_names_every_video(videos_dir, tmp_path):
    frame = local_corpus(LocalParams(videos_dir=str(videos_dir), speaker="li"), tmp_path, 25.0)
    assert set(frame["speaker"]) == {"li"}
    assert frame["clip_id"].iloc[0] == "li_anchor_a_000"


def test_intervals_csv(videos_dir, tmp_path):
    csv = tmp_path / "intervals.csv"
    csv.write_text(
        "video,start_s,end_s,speaker\n"
        "anchor_a.mp4,0.0,1.0,wang\n"
        "anchor_a.mp4,1.0,2.0,\n"
        "anchor_b.mkv,0.5,2.5,zhao\n"
        "anchor_b.mkv,2.0,9.0,zhao\n"  # past the end of a 3 s video
        "missing.mp4,0,1,zhao\n"
        "broken.mp4,0,1,zhao\n"
    )
    params = LocalParams(videos_dir=str(videos_dir), intervals_csv=str(csv), speaker="li")
    frame = local_corpus(params, tmp_path, fps=25.0).set_index("clip_id")

    assert list(frame.index) == [
        "wang_anchor_a_000",
        "li_anchor_a_001",
        "zhao_anchor_b_000",
        "zhao_anchor_b_001",
        "zhao_missing_000",
        "zhao_broken_000",
    ]
    assert list(frame["status"]) == ["ok", "ok", "ok", "failed", "failed", "failed"]
    assert frame.loc["zhao_anchor_b_000", ["start_s", "end_s"]].tolist() == [0.5, 2.5]
    assert "after the end of the video" in frame.loc["zhao_anchor_b_001", "reason"]
    assert "missing.mp4: video not found" in frame.loc["zhao_missing_000", "reason"]
    assert "broken.mp4" in frame.loc["zhao_broken_000", "reason"]


def test_intervals_csv_without_speaker_column(videos_dir, tmp_path):
    csv = tmp_path / "intervals.csv"
    csv.write_text("video,start_s,end_s\nanchor_b.mkv,0,1.5\n")
    frame = local_corpus(
        LocalParams(videos_dir=str(videos_dir), intervals_csv=str(csv)), tmp_path, fps=25.0
    )
    assert list(frame["clip_id"]) == ["anchor_b_anchor_b_000"]
    assert frame["status"].tolist() == ["ok"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clip,start_s,end_s\nanchor_a.mp4,0,1\n", r"bad.csv: missing columns \['video'\]"),
        (
            "video,start_s,end_s\nanchor_a.mp4,zero,1\n",
            r"bad.csv: start_s is not a number on line\(s\) \[2\]",
        ),
        (
            "video,start_s,end_s\nanchor_a.mp4,0,1\nanchor_a.mp4,2,1\n",
            r"bad.csv: need 0 <= start_s < end_s.*\[3\]",
        ),
    ],
)
def test_bad_intervals_csv_names_the_file(videos_dir, tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(ValueError, match=message):
        local_corpus(
            LocalParams(videos_dir=str(videos_dir), intervals_csv=str(csv)), tmp_path, 25.0
        )


def test_missing_or_empty_folder_is_an_error(tmp_path):
    # An InputError: the corpus stage reports it in one line (exit 2), not with a traceback.
    with pytest.raises(InputError, match="nowhere: videos folder not found"):
        local_corpus(LocalParams(videos_dir=str(tmp_path / "nowhere")), tmp_path, 25.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no videos with extensions"):
        local_corpus(LocalParams(videos_dir=str(tmp_path / "empty")), tmp_path, 25.0)
    with pytest.raises(ValueError, match="gone.csv: intervals CSV not found"):
        params = LocalParams(
            videos_dir=str(tmp_path / "empty"), intervals_csv=str(tmp_path / "gone.csv")
        )
        local_corpus(params, tmp_path, 25.0)


def test_videos_in_subfolders_keep_distinct_ids(tmp_path, video_factory):
    (tmp_path / "v" / "a").mkdir(parents=True)
    (tmp_path / "v" / "b").mkdir()
    video_factory("v/a/intro.mp4", seconds=1.0)
    video_factory("v/b/intro.mp4", seconds=1.0)
    frame = local_corpus(LocalParams(videos_dir=str(tmp_path / "v")), tmp_path, 25.0)
    assert list(frame["video_id"]) == ["a_intro", "b_intro"]
    assert frame["clip_id"].is_unique


def test_safe_id_keeps_clean_names_and_separates_unclean_ones():
    assert safe_id("jon_abc-DEF_123") == "jon_abc-DEF_123"
    news, weather = safe_id("新闻 01"), safe_id("天气 01")
    assert news.startswith("01-") and weather.startswith("01-") and news != weather
    assert safe_id("新闻") != "" and safe_id("a b") == safe_id("a b")


def test_empty_video_name_in_csv_names_the_line(videos_dir, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("video,start_s,end_s\nanchor_a.mp4,0,1\n,0,1\n")
    with pytest.raises(ValueError, match=r"bad.csv: empty video on line\(s\) \[3\]"):
        local_corpus(LocalParams(videos_dir=str(videos_dir), intervals_csv=str(csv)), tmp_path, 25)


def test_speaker_map_names_the_anchor_of_each_broadcast(videos_dir, tmp_path):
    speakers = tmp_path / "speakers.csv"
    speakers.write_text("video,speaker\nanchor_a.mp4,li\nanchor_b.mkv, li \n")
    params = LocalParams(videos_dir=str(videos_dir), speaker_map=str(speakers))
    frame = local_corpus(params, tmp_path, 25.0)
    # Both broadcasts are li's (one speaker: train and test clips of one anchor); the video the
    # map does not list falls back to its file stem.
    assert list(frame["speaker"]) == ["li", "li", "broken"]
    assert list(frame["clip_id"]) == ["li_anchor_a_000", "li_anchor_b_000", "broken_broken_000"]
    speakers.write_text("video,speaker\nanchor_a.mp4,li\nanchor_a.mp4,wang\n")
    with pytest.raises(InputError, match=r"speakers.csv: videos listed twice: \['anchor_a.mp4'\]"):
        local_corpus(params, tmp_path, 25.0)
    speakers.write_text("video,anchor\nanchor_a.mp4,li\n")
    with pytest.raises(InputError, match="speakers.csv: expected columns video,speaker"):
        local_corpus(params, tmp_path, 25.0)
    with pytest.raises(InputError, match="nowhere.csv: speaker map not found"):
        local_corpus(params.model_copy(update={"speaker_map": str(tmp_path / "nowhere.csv")}),
                     tmp_path, 25.0)  # fmt: skip

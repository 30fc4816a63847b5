"""The ``pats`` corpus source, offline: file:// links to tiny videos made at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yt_dlp

from pipeline.config import PatsParams
from pipeline.corpus import pats
from pipeline.corpus.pats import finished_download, parse_time, pats_corpus, source_of
from pipeline.errors import InputError
from pipeline.io.tables import RAW

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = "https://www.youtube.com/watch?v={video_id}"


@pytest.fixture
def pats_setup(tmp_path, video_factory, monkeypatch):
    """Source videos (two good, one corrupt, one missing) and a PATS-format CSV linking them."""
    monkeypatch.chdir(tmp_path)  # download_dir is relative, as in params.yaml
    sources = tmp_path / "sources"
    sources.mkdir()
    video_factory("sources/jon_a.mp4", seconds=3.0)
    video_factory("sources/oliver_b.mp4", seconds=3.0)
    (sources / "chem_c.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    text = (FIXTURES / "cmu_intervals_df.template.csv").read_text()
    csv = tmp_path / "cmu_intervals_df.csv"
    csv.write_text(text.replace("{root}", sources.as_uri()))
    return csv


def make_params(csv: Path, **overrides) -> PatsParams:
    values = dict(
        intervals_csv=str(csv),
        speakers=["jon", "chemistry", "oliver", "seth"],
        min_interval_s=0.5,
        max_interval_s=2.5,
        download_dir="downloads",
        retries=0,
        language="en",
    )
    values.update(overrides)
    return PatsParams(**values)


@pytest.fixture
def download_calls(monkeypatch):
    """URLs handed to yt-dlp's ``download`` (the real one runs)."""
    calls: list[str] = []

    class CountingYoutubeDL(yt_dlp.YoutubeDL):
        def download(self, url_list):
            calls.extend(url_list)
            return super().download(url_list)

    monkeypatch.setattr(pats.yt_dlp, "YoutubeDL", CountingYoutubeDL)
    return calls


def test_pats_corpus_filters_downloads_once_and_reports_failures(pats_setup, download_calls):
    csv = pats_setup
    frame = pats_corpus(make_params(csv), Path("data/raw"), fps=25.0)

    assert list(frame.columns) == RAW.names
    by_id = frame.set_index("clip_id")
    # conan is not a configured speaker; 1003 (2.9 s) and 1004 (0.2 s) are out of [0.5, 2.5] s.
    assert list(frame["clip_id"]) == [
        "jon_jon_a_1001",
        "jon_jon_a_1002",
        "oliver_oliver_b_2001",
        "oliver_oliver_b_2002",
        "seth_seth_gone_3001",
        "seth_seth_gone_3002",
        "chemistry_chem_c_cmu0000004001",
    ]
    assert set(frame["source"]) == {"pats"} and set(frame["language"]) == {"en"}

    ok = by_id.loc[["jon_jon_a_1001", "jon_jon_a_1002", "oliver_oliver_b_2001"]]
    assert (ok["status"] == "ok").all() and (ok["reason"] == "").all()
    assert ok["start_s"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert ok["end_s"].tolist() == pytest.approx([1.0, 2.5, 2.0])
    assert ok.loc["jon_jon_a_1001", "path"] == str(Path("downloads") / "jon_a.mp4")
    assert ok.loc["jon_jon_a_1001", "video_id"] == "jon_a"
    assert ok.loc["jon_jon_a_1001", "url"].startswith("file://")
    assert Path(ok.loc["jon_jon_a_1001", "path"]).is_file()

    beyond = by_id.loc["oliver_oliver_b_2002"]
    assert beyond["status"] == "failed" and "after the end of the video" in beyond["reason"]
    for clip_id in ("seth_seth_gone_3001", "seth_seth_gone_3002"):
        row = by_id.loc[clip_id]
        assert row["status"] == "failed"
        assert row["reason"].startswith("download failed:") and "seth_gone.mp4" in row["reason"]
    corrupt = by_id.loc["chemistry_chem_c_cmu0000004001"]
    assert corrupt["status"] == "failed" and "unreadable" in corrupt["reason"]
    assert "chem_c.mp4" in corrupt["reason"]

    # One yt-dlp download per distinct video, however many intervals it has.
    assert sorted(Path(u).name for u in download_calls) == [
        "chem_c.mp4",
        "jon_a.mp4",
        "oliver_b.mp4",
        "seth_gone.mp4",
    ]

    # A second run finds the finished downloads and fetches nothing (the missing one is retried).
    cached = Path("downloads") / "jon_a.mp4"
    mtime = cached.stat().st_mtime_ns
    download_calls.clear()
    again = pats_corpus(make_params(csv), Path("data/raw"), fps=25.0)
    assert [Path(u).name for u in download_calls] == ["seth_gone.mp4"]
    assert cached.stat().st_mtime_ns == mtime
    assert again.equals(frame)


def test_max_intervals_per_speaker_takes_the_first_in_file_order(pats_setup, download_calls):
    params = make_params(pats_setup, speakers=["jon", "oliver"], max_intervals_per_speaker=1)
    frame = pats_corpus(params, Path("out"), fps=25.0)
    assert list(frame["clip_id"]) == ["jon_jon_a_1001", "oliver_oliver_b_2001"]
    assert (frame["status"] == "ok").all()


def test_interval_ending_within_one_frame_of_the_end_is_clamped(pats_setup, download_calls):
    csv = pats_setup
    csv.write_text(csv.read_text().replace("00:00:02.500000,1002", "00:00:03.010000,1002"))
    frame = pats_corpus(make_params(csv, speakers=["jon"]), Path("out"), fps=25.0)
    row = frame.set_index("clip_id").loc["jon_jon_a_1002"]
    assert row["status"] == "ok" and row["end_s"] == pytest.approx(3.0, abs=0.02)


def test_missing_csv_and_missing_columns_name_the_file(tmp_path):
    # An InputError: the corpus stage reports it in one line (exit 2), not with a traceback.
    with pytest.raises(InputError, match="nowhere.csv: PATS intervals file not found"):
        pats_corpus(make_params(tmp_path / "nowhere.csv"), tmp_path, fps=25.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("speaker,start_time,end_time\njon,0,1\n")
    with pytest.raises(
        ValueError, match=r"bad.csv: missing columns \['interval_id', 'video_link'\]"
    ):
        pats_corpus(make_params(bad), tmp_path, fps=25.0)


def test_unknown_speaker_is_an_error(pats_setup):
    with pytest.raises(ValueError, match=r"no intervals for speakers \['chem'\]"):
        pats_corpus(make_params(pats_setup, speakers=["jon", "chem"]), Path("out"), fps=25.0)


def test_unreadable_times_become_failed_rows(pats_setup, download_calls):
    csv = pats_setup
    csv.write_text(csv.read_text().replace("2019-12-24 00:00:00.500000,oliver", "soon,oliver"))
    frame = pats_corpus(make_params(csv, speakers=["oliver"]), Path("out"), fps=25.0)
    row = frame.set_index("clip_id").loc["oliver_oliver_b_2001"]
    assert row["status"] == "failed" and "bad interval times" in row["reason"]
    assert "soon" in row["reason"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2019-12-24 00:01:23.500000", 83.5),
        ("0:01:23.5", 83.5),
        ("01:23.5", 83.5),
        ("0 days 00:01:23.500000", 83.5),
        ("83.5", 83.5),
        (83.5, 83.5),
        ("1:00:00", 3600.0),
    ],
)
def test_parse_time_accepts_pats_spellings(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1", "nan"])
def test_parse_time_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_source_of_links_and_bare_ids():
    assert source_of("https://www.youtube.com/watch?v=abcdefghijk", "x.mp4", TEMPLATE) == (
        "abcdefghijk",
        "https://www.youtube.com/watch?v=abcdefghijk",
    )
    assert source_of("https://youtu.be/abcdefghijk", "", TEMPLATE)[0] == "abcdefghijk"
    assert source_of("abcdefghijk", "", TEMPLATE) == (
        "abcdefghijk",
        "https://www.youtube.com/watch?v=abcdefghijk",
    )
    # Non-YouTube links (some of jon's) are named after PATS's video_fn.
    assert source_of("http://www.cc.com/video/xyz", "Jon Show 01.mp4", TEMPLATE)[0].startswith(
        "Jon_Show_01-"
    )
    assert source_of("file:///videos/clip%201.mp4", "", TEMPLATE)[0].startswith("clip_1-")


def test_finished_download_ignores_partial_files(tmp_path):
    for name in ("vid.mp4.part", "vid.f137.mp4", "vid.temp.mp4", "vid.mp4.ytdl", "video.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert finished_download(tmp_path, "vid") is None
    (tmp_path / "vid.webm").write_bytes(b"x")
    assert finished_download(tmp_path, "vid") == tmp_path / "vid.webm"


def test_a_partial_download_is_replaced_by_a_complete_one(pats_setup, download_calls):
    partial = Path("downloads") / "jon_a.mp4.part"
    partial.parent.mkdir()
    partial.write_bytes(b"\0" * 100)  # what an interrupted run leaves behind
    frame = pats_corpus(make_params(pats_setup, speakers=["jon"]), Path("out"), fps=25.0)
    assert (frame["status"] == "ok").all()
    assert len(download_calls) == 1 and not partial.exists()
    assert frame["path"].iloc[0] == str(Path("downloads") / "jon_a.mp4")


def test_times_disagreeing_with_delta_time_are_logged(pats_setup, download_calls, caplog):
    csv = pats_setup
    csv.write_text(
        csv.read_text().replace(
            "train,1.0,2019-12-24 00:00:01.000000,1001", "train,9.0,2019-12-24 00:00:01.000000,1001"
        )
    )
    pats_corpus(make_params(csv, speakers=["jon"]), Path("out"), fps=25.0)
    assert "differs from delta_time" in caplog.text and "interval 1001" in caplog.text


# ---------------------------------------------------------------- split formats (YouTube today)
def _split_streams(folder: Path, video_factory) -> dict[str, Path]:
    """What YouTube serves now: a tall video-only stream, an audio-only stream and a short
    muxed file (the only single-file format left, 360p there, 48 lines here)."""
    import subprocess

    (folder / "streams").mkdir()
    streams = {"video": video_factory("streams/video_only.mp4", seconds=3.0, size=96, audio=None),
               "muxed": video_factory("streams/muxed.mp4", seconds=3.0, size=48)}  # fmt: skip
    streams["audio"] = folder / "streams" / "audio_only.m4a"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=16000:duration=3", "-c:a", "aac",
                    str(streams["audio"])], check=True)  # fmt: skip
    return streams


@pytest.fixture
def split_format_site(tmp_path, video_factory, monkeypatch):
    """A fake yt-dlp extractor for ``fakesplit:<id>`` links offering the three formats of
    :func:`_split_streams` (``<id>`` ``gone``: the site has no such video), plugged into the
    ``YoutubeDL`` the source builds; the yt-dlp options it was built with are recorded."""
    from yt_dlp.extractor.common import InfoExtractor
    from yt_dlp.utils import ExtractorError

    monkeypatch.chdir(tmp_path)
    streams = _split_streams(tmp_path, video_factory)
    built: list[dict] = []

    class FakeSplitIE(InfoExtractor):
        _VALID_URL = r"fakesplit:(?P<id>\w+)"

        def _real_extract(self, url):
            video_id = self._match_id(url)
            if video_id == "gone":
                raise ExtractorError("Video unavailable", expected=True)
            return {"id": video_id, "title": video_id, "formats": [
                {"format_id": "18", "url": streams["muxed"].as_uri(), "ext": "mp4",
                 "width": 48, "height": 48, "vcodec": "avc1.42001E", "acodec": "mp4a.40.2"},
                {"format_id": "137", "url": streams["video"].as_uri(), "ext": "mp4",
                 "width": 96, "height": 96, "vcodec": "avc1.640028", "acodec": "none"},
                {"format_id": "140", "url": streams["audio"].as_uri(), "ext": "m4a",
                 "vcodec": "none", "acodec": "mp4a.40.2", "abr": 128},
            ]}  # fmt: skip

    class SiteYoutubeDL(yt_dlp.YoutubeDL):
        def __init__(self, params=None, auto_init=True):
            super().__init__(params, auto_init)
            built.append(dict(params or {}))
            self.add_info_extractor(FakeSplitIE())

        def extract_info(self, url, download=True, ie_key=None, *args, **kwargs):
            return super().extract_info(url, download, FakeSplitIE.ie_key(), *args, **kwargs)

    monkeypatch.setattr(pats.yt_dlp, "YoutubeDL", SiteYoutubeDL)
    csv = tmp_path / "cmu_intervals_df.csv"
    csv.write_text(
        "dataset,delta_time,end_time,interval_id,speaker,start_time,video_fn,video_link\n"
        "train,1.0,0:00:01,1,seth,0:00:00,,gone\n"
        "train,1.0,0:00:02,2,seth,0:00:01,,vidA\n"
        "train,1.0,0:00:03,3,seth,0:00:02,,vidB\n"
    )
    return csv, built


def _split_params(csv: Path, **overrides) -> PatsParams:
    return make_params(csv, speakers=["seth"], url_template="fakesplit:{video_id}",
                       **overrides)  # fmt: skip


def test_split_formats_are_merged_at_the_best_height(split_format_site):
    csv, built = split_format_site
    frame = pats_corpus(_split_params(csv, min_height=64), Path("out"), fps=25.0)
    ok = frame[frame["status"] == "ok"].set_index("video_id")
    assert list(ok.index) == ["vidA", "vidB"]
    from pipeline.io.media import probe

    merged = probe(ok.loc["vidA", "path"])
    assert (merged.width, merged.height) == (96, 96)  # the video-only stream ...
    assert merged.has_audio  # ... merged with the audio-only one
    assert built[0]["merge_output_format"] == "mp4"
    assert frame.set_index("video_id").loc["gone", "reason"].startswith("download failed:")


def test_a_muxed_only_format_arrives_short_and_is_a_failed_row(split_format_site):
    """The old single-file format string takes the 48-line muxed file: below min_height."""
    csv, _ = split_format_site
    params = _split_params(
        csv, min_height=64, format="best[height<=720][ext=mp4]/best[height<=720]/best"
    )
    frame = pats_corpus(params, Path("out"), fps=25.0).set_index("video_id")
    assert (frame["status"] == "failed").all()
    assert frame.loc["vidA", "reason"] == (
        "source is 48x48, below corpus.pats.min_height 64 (its clips would be upscaled; the "
        "format served no taller stream)"
    )


def test_the_quota_counts_usable_intervals_and_fetches_no_more(split_format_site, monkeypatch):
    csv, built = split_format_site
    fetched: list[str] = []
    real = pats.download_video
    monkeypatch.setattr(pats, "download_video",
                        lambda url, *a: fetched.append(url) or real(url, *a))  # fmt: skip
    frame = pats_corpus(_split_params(csv, max_intervals_per_speaker=1), Path("out"), fps=25.0)
    # The first interval's video is gone: it is a failed row and does not count.
    assert list(frame["status"]) == ["failed", "ok"]
    assert fetched == ["fakesplit:gone", "fakesplit:vidA"]  # vidB is never fetched


def test_cookies_and_extractor_args_reach_yt_dlp(tmp_path):
    cookies = tmp_path / "cookies.txt"
    params = make_params(tmp_path / "x.csv", cookies=str(cookies),
                         extractor_args={"youtube": {"player_client": ["web"]}})  # fmt: skip
    options = pats.ytdlp_options(params, tmp_path, "abc")
    assert options["cookiefile"] == str(cookies)
    assert options["extractor_args"] == {"youtube": {"player_client": ["web"]}}
    assert options["format"] == "bv*[height<=?720]+ba/b[height<=?720]"
    plain = pats.ytdlp_options(make_params(tmp_path / "x.csv"), tmp_path, "abc")
    assert "cookiefile" not in plain and "extractor_args" not in plain

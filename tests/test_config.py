from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_load_with_every_section():
    params = load_params(ROOT / "params.yaml")
    assert params.corpus.source == "sample"
    assert params.cut.size == 256 and params.cut.fps == 25.0
    assert params.curate.test_fraction == pytest.approx(0.1)
    assert params.extract.pose_backend in {"mediapipe", "annotations", "dwpose"}


def test_paper_profile_loads():
    params = load_params(ROOT / "params" / "paper.yaml")
    assert params.cut.size == 512


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"cut": {"size": "big"}}, "cut.size: Input should be a valid integer"),
        ({"cut": {"sise": 3}}, "cut.sise: unknown key"),
        ({"curate": {"max_silence_ratio": 1.5}}, "curate.max_silence_ratio"),
        ({"corpus": {"source": "youtube"}}, "corpus.source"),
        ({"extract": {"audio_features": "wav2vec2"}}, "needs wav2vec2.path"),
        ({"corpus": {"sample": {"min_clip_s": 5, "max_clip_s": 3}}}, "max_clip_s"),
        ({"nonsense": {}}, "nonsense: unknown key"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_params(raw, "p.yaml")


def test_integers_are_accepted_for_float_knobs_and_sections_default(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"cut": {"fps": 30}}))
    params = load_params(path)
    assert params.cut.fps == 30.0 and isinstance(params.cut.fps, float)
    assert params.curate.min_frames == 16  # a section left out takes its defaults


def test_missing_and_invalid_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cut: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_params(bad)

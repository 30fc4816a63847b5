from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params, parse_params
from pipeline.errors import ConfigError

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
        (
            {"corpus": {"sources": [{"name": "a", "kind": "local", "pats": {}}]}},
            "of kind 'local': it cannot have a 'pats' section",
        ),
        (
            {
                "corpus": {
                    "sources": [{"name": "a", "kind": "local"}, {"name": "a", "kind": "pats"}]
                }
            },
            "names must be unique",
        ),
        ({"corpus": {"sources": [{"name": "a b", "kind": "local"}]}}, "corpus.sources.0.name"),
        ({"negatives": {"positive_sources": ["pats"]}}, "not corpus sources"),
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


# Knobs whose value is a mapping of the user's own keys (source names, yt-dlp extractors).
FREE_FORM = {"cut.per_source", "corpus.pats.extractor_args"}


def _yaml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" not in FREE_FORM:
            keys |= _yaml_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def _model_keys(model: type, prefix: str = "") -> set[str]:
    import typing

    from pydantic import BaseModel

    keys = set()
    for name, field in model.model_fields.items():
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        sections = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if sections and prefix + name not in FREE_FORM:
            keys |= _model_keys(sections[0], f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_sample_and_paper_profiles_name_every_knob_of_the_params_model():
    """params.yaml and params/paper.yaml list the same keys, and every field of config.Params:
    a knob one profile lacks would silently take the code's default in that profile."""
    from pipeline.config import Params

    sample = _yaml_keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    paper = _yaml_keys(yaml.safe_load((ROOT / "params" / "paper.yaml").read_text()))
    model = _model_keys(Params)
    assert not sample - paper, f"params/paper.yaml lacks {sorted(sample - paper)}"
    assert not paper - sample, f"params.yaml lacks {sorted(paper - sample)}"
    assert not model - sample, f"params.yaml lacks the config.py fields {sorted(model - sample)}"


def test_sources_resolve_with_their_own_or_the_corpus_settings():
    raw = {"corpus": {"sources": [{"name": "pats", "kind": "pats"},
                                  {"name": "cnas", "kind": "local",
                                   "local": {"videos_dir": "cnas", "language": "zh"}}],
                      "local": {"videos_dir": "elsewhere"}},
           "negatives": {"positive_sources": ["pats"]}}  # fmt: skip
    params = parse_params(raw, "p.yaml")
    (pats, pats_kind, pats_settings), (cnas, cnas_kind, cnas_settings) = (
        params.corpus.resolved_sources()
    )
    assert (pats, pats_kind, pats_settings) == ("pats", "pats", params.corpus.pats)
    assert (cnas, cnas_kind, cnas_settings.videos_dir) == ("cnas", "local", "cnas")
    # One source: named after its kind (the rows' `source` column keeps its meaning).
    single = parse_params({"corpus": {"source": "local"}}, "p.yaml").corpus.resolved_sources()
    assert [(s.name, s.kind) for s in single] == [("local", "local")]

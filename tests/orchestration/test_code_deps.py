"""dvc.yaml's code deps equal each stage's import closure (so DVC knows what is stale)."""

from pathlib import Path

import yaml

from pipeline.orchestration.code_deps import (
    import_closure,
    mismatches,
    stage_entry,
    write_code_deps,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_stage_declares_exactly_the_files_its_command_imports():
    problems = mismatches(ROOT)
    assert not problems, "dvc.yaml code deps disagree with the imports (run `python -m " \
        "pipeline.cli.code_deps --write`):\n" + "\n".join(problems)  # fmt: skip


def test_every_stage_depends_on_the_params_model():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "pipeline/config.py" in stage.get("do", stage)["deps"], name


def _project(tmp_path: Path) -> Path:
    files = {
        "pipeline/__init__.py": "",
        "pipeline/config.py": "",
        "pipeline/unused.py": "",
        "pipeline/io/__init__.py": "",
        "pipeline/io/tables.py": "from pipeline import config\n",
        "pipeline/corpus/__init__.py": "",
        "pipeline/corpus/sample/__init__.py": "",
        "pipeline/corpus/sample/render.py": "from .tts import speak\nimport numpy\n",
        "pipeline/corpus/sample/tts.py": "def speak():\n    from ..local import x\n",
        "pipeline/corpus/local.py": "x = 1\n",
        "pipeline/corpus/sample/sentences/en.txt": "Hello.\n",
        "stages/__init__.py": "",
        "stages/one.py": (
            "from pipeline.io import tables\n"
            "def main():\n    import pipeline.corpus.sample.render\n"
        ),
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_closure_follows_absolute_relative_lazy_imports_and_package_data(tmp_path):
    root = _project(tmp_path)
    assert import_closure(root, "stages.one") == [
        "pipeline/__init__.py",
        "pipeline/config.py",  # `from pipeline import config`
        "pipeline/corpus/__init__.py",
        "pipeline/corpus/local.py",  # `from ..local import x` inside a function
        "pipeline/corpus/sample/__init__.py",
        "pipeline/corpus/sample/render.py",  # imported inside main()
        "pipeline/corpus/sample/sentences/en.txt",  # read by render.py
        "pipeline/corpus/sample/tts.py",  # `from .tts import speak`
        "pipeline/io/__init__.py",
        "pipeline/io/tables.py",
        "stages/__init__.py",
        "stages/one.py",
    ]


def test_mismatches_name_the_stage_and_the_file_and_write_fixes_them(tmp_path):
    root = _project(tmp_path)
    (root / "dvc.yaml").write_text(
        "# the DAG\nstages:\n  one:\n    cmd: python -m stages.one\n    deps:\n"
        "      - data/input\n      - stages/one.py\n      - pipeline/unused.py\n"
        "    outs:\n      - data/out\n"
    )
    problems = mismatches(root)
    assert "one: imports pipeline/io/tables.py but dvc.yaml does not list it" in problems
    assert "one: dvc.yaml lists pipeline/unused.py but its command does not import it" in problems
    write_code_deps(root)
    assert mismatches(root) == []
    text = (root / "dvc.yaml").read_text()
    assert text.startswith("# the DAG\n")
    deps = yaml.safe_load(text)["stages"]["one"]["deps"]
    assert deps[0] == "data/input" and "pipeline/unused.py" not in deps


def test_every_package_data_file_has_a_reader_in_the_closure_rules():
    """A template or data file shipped in the wheel is a dependency of the stages that read it."""
    import tomllib

    from pipeline.orchestration.code_deps import PACKAGE_DATA

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = {f"pipeline/{g}" for g in shipped["package-data"]["pipeline"]}
    assert globs == {pattern for pattern, _ in PACKAGE_DATA}
    for pattern, reader in PACKAGE_DATA:
        assert (ROOT / reader).is_file() and list(ROOT.glob(pattern)), pattern


def test_stage_entry_reads_python_and_launcher_commands():
    assert stage_entry("python -m stages.cut --out x") == "stages.cut"
    assert stage_entry("${runtime.launcher} -m stages.train_univdm --out y") == (
        "stages.train_univdm"
    )
    assert stage_entry("bash run.sh") is None


def test_trainers_run_through_the_launcher_which_dvc_resolves_from_params():
    from pipeline.orchestration.dag import load_dag

    launcher = yaml.safe_load((ROOT / "params.yaml").read_text())["runtime"]["launcher"]
    specs = load_dag(ROOT)
    for name in ("train_univdm", "train_classifier@face", "train_classifier@nonface"):
        module = f"stages.{specs[name].base}"
        assert specs[name].argv[: len(launcher.split()) + 2] == [*launcher.split(), "-m", module]


def test_training_univdm_does_not_depend_on_the_classifiers_or_guidance():
    # An edit to the PCE classifier or to SG / DG leaves train_univdm up to date in DVC.
    closure = set(import_closure(ROOT, "stages.train_univdm"))
    assert "pipeline/models/ddim.py" in closure  # the preview's unguided sampler
    for path in ("pipeline/models/classifier.py", "pipeline/inference/guidance.py",
                 "pipeline/inference/sampling.py"):  # fmt: skip
        assert path not in closure, path

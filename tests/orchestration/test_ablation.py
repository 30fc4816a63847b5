"""``paha ablate``: the grid's overrides, the aggregation and verdicts on hand-computed numbers,
resuming a grid from its file, the HTML table; one slow run of two cells on the tiny repo."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli.main import main
from pipeline.config import parse_params
from pipeline.errors import ConfigError
from pipeline.orchestration.ablation import runner
from pipeline.orchestration.ablation.grid import (
    SEED_KEYS,
    apply_overrides,
    cell_overrides,
    load_cells,
    machine_fingerprint,
    pending_cells,
    starts_from,
)
from pipeline.orchestration.ablation.report import markdown_tables, render_html, write_outputs
from pipeline.orchestration.ablation.runner import run_ablation, run_grid
from pipeline.orchestration.ablation.statistics import (
    ablation_document,
    judge_directions,
    summarize,
    verdict,
)
from tests.tiny_repo import ROOT


def _get(params: dict, key: str):
    for part in key.split("."):
        params = params[part]
    return params


def test_a_cell_sets_every_method_seed_and_the_variant_and_nothing_else():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    changed = apply_overrides(params, cell_overrides("no_par_no_guidance", 2))
    for key in SEED_KEYS:
        assert _get(changed, key) == 2, key
    assert changed["train_univdm"]["par"]["enabled"] is False
    assert changed["infer"]["lambda_face"] == 0.0 and changed["infer"]["lambda_nonface"] == 0.0
    # The data and the measuring instruments keep their seeds; the input is not modified.
    for key in ("corpus.seed", "curate.split_seed", "train_gesture_ae.seed",
                "train_syncnet.seed", "evaluate.div_seed"):  # fmt: skip
        assert _get(changed, key) == _get(params, key), key
    assert params["train_univdm"]["par"]["enabled"] is True
    parse_params(changed)  # still a valid params file
    assert cell_overrides("full", 1) == {key: 1 for key in SEED_KEYS}


@pytest.mark.parametrize("key", ["infer.lambda_fase", "trian.seed", "train_univdm.par"])
def test_an_override_of_a_missing_key_or_a_section_is_refused(key):
    params = {"infer": {"lambda_face": 0.1}, "train_univdm": {"par": {"enabled": True}}}
    with pytest.raises(ConfigError, match="params.yaml"):
        apply_overrides(params, {key: 0})


def test_unknown_variants_and_bad_seeds_exit_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "ablation.json")
    assert main(["ablate", "--repo", str(tmp_path), "--variants", "no_pra", "--out", out]) == 2
    assert "unknown ablation variant 'no_pra'" in capsys.readouterr().err
    assert main(["ablate", "--repo", str(tmp_path), "--seeds", "-1", "--out", out]) == 2
    assert not (tmp_path / "ablation.json").exists()


def _cell(variant: str, seed: int, sg: dict, dg: dict | None = None,
          face_auc: float | None = None) -> dict:  # fmt: skip
    classifier = {"face": {"heldout_auc": face_auc}, "nonface": {"heldout_auc": 0.9}}
    return {
        "variant": variant,
        "seed": seed,
        "overrides": cell_overrides(variant, seed),
        "commit": "abc",
        "evaluate": {"sg": sg, "dg": dg or sg},
        "classifier": classifier,
    }


def _grid() -> list[dict]:
    """Hand-made cells of three seeds; the expected numbers are in the test below."""
    cells = []
    for s in range(3):
        full = {"psnr_face": 10.0 + s, "psnr_hand": 5.0, "fvd": None, "div": 1.0, "hkv": 0.01,
                "sync_corpus_c": (0.30, 0.32, 0.31)[s], "sync_corpus_d": 0.6}  # fmt: skip
        dg = full | {"psnr_face": 10.5 + s}
        no_par = full | {"psnr_face": (9.0, 9.5, 10.0)[s], "psnr_hand": (5.1, 4.8, 5.0)[s],
                         "div": 2.0}  # fmt: skip
        no_face = full | {"sync_corpus_c": (0.20, 0.21, 0.19)[s],
                          "sync_corpus_d": (0.70, 0.72, 0.71)[s]}  # fmt: skip
        cells += [_cell("full", s, full, dg, face_auc=(0.8, 0.9, 0.85)[s]),
                  _cell("no_par", s, no_par),
                  _cell("no_face_guidance", s, no_face),
                  _cell("no_augmentation", s, full, face_auc=(0.7, 0.75, 0.65)[s])]  # fmt: skip
    return cells


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarize(_grid())
    face = summary["full"]["evaluate"]["sg"]["psnr_face"]
    assert face == {"mean": 11.0, "std": 1.0, "n": 3}  # 10, 11, 12
    assert summary["full"]["evaluate"]["sg"]["fvd"] == {"mean": None, "std": None, "n": 0}
    assert summary["no_augmentation"]["classifier"]["face"]["heldout_auc"] == {
        "mean": 0.7, "std": 0.05, "n": 3}  # fmt: skip
    assert summary["full"]["seeds"] == [0, 1, 2]
    one_seed = summarize([_cell("full", 0, {"psnr_face": 12.0})])
    assert one_seed["full"]["evaluate"]["sg"]["psnr_face"] == {"mean": 12.0, "std": None, "n": 1}


def test_verdicts_follow_the_paired_rule_on_hand_computed_numbers():
    judged = {d["direction"]: d for d in judge_directions(_grid())}
    # PAR: deltas 1, 1.5, 2 -> mean 1.5, std 0.5 > 2 * 0.5 / sqrt(3) = 0.577: reproduced.
    par = judged["PAR on vs off: sg psnr_face higher"]
    assert (par["delta_mean"], par["delta_std"], par["n"]) == (1.5, 0.5, 3)
    assert par["deltas"] == [1.0, 1.5, 2.0] and par["verdict"] == "reproduced"
    # deltas -0.1, 0.2, 0: mean 0.033 < 2 * 0.153 / sqrt(3): within noise.
    assert judged["PAR on vs off: sg psnr_hand higher"]["verdict"] == "within noise"
    assert judged["PAR on vs off: sg fvd lower"]["verdict"] == "not measured"  # FVD null
    # Div. 1 - 2 = -1 every seed (std 0): the wrong sign.
    assert judged["PAR on vs off: sg div higher"]["verdict"] == "not reproduced"
    # The corpus SyncNet's keys stand for Sync-C / Sync-D; Sync-D is better lower.
    sync_c = judged["face guidance on vs off: sg sync_corpus_c higher"]
    assert math.isclose(sync_c["delta_mean"], 0.11) and sync_c["verdict"] == "reproduced"
    assert judged["face guidance on vs off: sg sync_corpus_d lower"]["verdict"] == "reproduced"
    # DG vs SG within each full run: every metric with a better direction, HKV never judged.
    dg = [d for d in judged.values() if d["claim"] == "DG vs SG"]
    assert judged["DG vs SG: psnr_face higher"]["verdict"] == "reproduced"  # +0.5, std 0
    assert judged["DG vs SG: psnr_hand higher"]["verdict"] == "within noise"  # 0 every seed
    assert not [d for d in judged.values() if d["metric"] == "hkv"] and len(dg) == 6
    # Augmentation: face AUC 0.8/0.9/0.85 vs 0.7/0.75/0.65 -> 0.1, 0.15, 0.2: reproduced.
    auc = judged["augmentation on vs off: face heldout_auc higher"]
    assert math.isclose(auc["delta_mean"], 0.15) and auc["verdict"] == "reproduced"
    # A direction whose variant did not run is left out.
    assert not [d for d in judged.values() if "non-face" in d["claim"]]


def test_verdict_edge_cases():
    assert verdict([], 1) == "not measured"
    assert verdict([0.3], 1) == "within noise"  # one seed says nothing about noise
    assert verdict([0.0, 0.0, 0.0], 1) == "within noise"
    assert verdict([-1.0, -1.2, -0.8], -1) == "reproduced"  # lower is better, and lower
    assert verdict([1.0, 1.2, 0.8], -1) == "not reproduced"
    assert verdict([1.0, -1.0, 1.1], 1) == "within noise"


def test_cells_pair_only_within_one_machine_and_a_seed_runs_once_per_machine(tmp_path):
    def on(machine, variant, seed, psnr):
        return _cell(variant, seed, {"psnr_face": psnr}) | {"machine": machine}

    cells = [on("A", "full", 0, 12.0), on("A", "no_par", 0, 11.0),
             on("B", "full", 0, 13.0), on("B", "no_par", 0, 10.0),
             on("A", "full", 1, 12.0), on("B", "no_par", 1, 5.0)]  # fmt: skip
    par = next(d for d in judge_directions(cells) if d["metric"] == "psnr_face"
               and d["claim"] == "PAR on vs off")  # fmt: skip
    # seed 0 on A (+1) and on B (+3); seed 1's cells are on two machines: not a pair.
    assert par["deltas"] == [1.0, 3.0] and par["seeds"] == [0, 0]
    assert par["machines"] == ["A", "B"] and (par["delta_mean"], par["n"]) == (2.0, 2)
    assert pending_cells(cells, ["full", "no_par"], [0, 1], "A") == [("no_par", 1)]
    assert pending_cells(cells, ["full"], [0], "C") == [("full", 0)]
    assert pending_cells(cells, ["full"], [0]) == [("full", 0)]  # cells without a machine: none
    out = tmp_path / "ablation.json"
    document = run_grid(cells, [("full", 0)], lambda v, s: on("C", v, s, 14.0), out)
    # The new machine's cell joins the others of seed 0; it replaces none of them.
    assert sorted(c["machine"] for c in document["cells"] if c["variant"] == "full"
                  and c["seed"] == 0) == ["A", "B", "C"]  # fmt: skip
    assert document["machines"] == ["A", "B", "C"]
    assert document["summary"]["full"]["machines"] == 3
    # Pooled over machines, and per machine: full's psnr_face 12, 13, 14 (seed 0) and 12 (seed 1).
    assert document["summary"]["full"]["evaluate"]["sg"]["psnr_face"]["n"] == 4
    by_machine = document["summary_by_machine"]
    assert list(by_machine) == ["A", "B", "C"]
    assert by_machine["A"]["full"]["evaluate"]["sg"]["psnr_face"] == {"mean": 12.0, "std": 0.0,
                                                                      "n": 2}  # fmt: skip
    assert "no_par" not in by_machine["C"]
    html = render_html(document)
    assert "Per machine (SG)" in html and "B: infer mode sg" in html


def test_the_machine_fingerprint_names_the_processor_and_the_simd_paths():
    fingerprint = machine_fingerprint()
    cpu, numpy_simd, torch_simd = fingerprint.split("; ")[:3]
    assert cpu and numpy_simd.startswith("numpy ") and torch_simd.startswith("torch ")
    assert fingerprint == machine_fingerprint()  # stable within a machine


def test_a_rerun_skips_the_cells_in_the_file_and_keeps_what_an_interrupted_grid_finished(
    tmp_path,
    monkeypatch,
):
    # The cells record no machine (run_ablation reads the fingerprint through the runner).
    monkeypatch.setattr(runner, "machine_fingerprint", lambda: None)
    out, html = tmp_path / "metrics" / "ablation.json", tmp_path / "ablation.html"
    stale = _cell("no_par", 0, {"psnr_face": 1.0}) | {"overrides": {"train_univdm.seed": 9}}
    write_outputs([_cell("full", 0, {"psnr_face": 10.0}), stale], out, html)
    cells = load_cells(out)
    todo = pending_cells(cells, ["no_par", "full"], [0, 1])
    # The stale cell (other overrides) runs again; each seed's full run comes first.
    assert todo == [("no_par", 0), ("full", 1), ("no_par", 1)]
    # A variant runs after the one it starts from: no_par_no_guidance after no_par.
    order = pending_cells([], ["no_par_no_guidance", "no_face_guidance", "no_par", "full"], [0])
    assert order == [("full", 0), ("no_face_guidance", 0), ("no_par", 0),
                     ("no_par_no_guidance", 0)]  # fmt: skip
    assert starts_from("no_par_no_guidance") == "no_par"
    assert starts_from("no_augmentation") == "full" and not starts_from("full")

    calls = []

    def fake_run(variant, seed):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((variant, seed))
        return _cell(variant, seed, {"psnr_face": 10.0 + seed})

    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, todo, fake_run, out, html)
    kept = {(c["variant"], c["seed"]) for c in load_cells(out)}
    assert kept == {("full", 0), ("no_par", 0), ("full", 1)}
    assert pending_cells(load_cells(out), ["no_par", "full"], [0, 1]) == [("no_par", 1)]
    # Nothing left to run: no clone is made (the repository need not even exist).
    done = {(v, s) for v, s in kept}
    document = run_ablation(tmp_path / "no-repo", ["full", "no_par"], [0], tmp_path / "w", out)
    assert {(c["variant"], c["seed"]) for c in document["cells"]} == done
    assert not (tmp_path / "w").exists()


def test_the_html_and_markdown_tables_show_mean_std_and_verdicts():
    document = ablation_document(_grid())
    page = render_html(document)
    assert "11 \u00b1 1 (3)" in page  # full / sg / psnr_face
    assert "PAR on vs off: sg psnr_face higher" in page and "+1.5 \u00b1 0.5 (3)" in page
    assert 'class="reproduced"' in page and 'class="not-measured"' in page
    assert "w/o PAR+two classifiers" in page  # the paper's table for reference
    markdown = markdown_tables(document)
    assert "| full | " in markdown and "| reproduced |" in markdown
    assert json.loads(json.dumps(document)) == document  # JSON as written


def _workspace(repo: Path) -> dict[str, tuple[int, int]]:
    """Every file of the repository's workspace (not .git, not DVC's own .dvc folder)."""
    skip = {".git", ".dvc"}
    return {p.relative_to(repo).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in repo.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(repo).parts)}  # fmt: skip


@pytest.mark.slow
def test_paha_ablate_runs_two_cells_in_a_scratch_clone_of_the_tiny_repo(tiny_repo, tmp_path):
    # The tiny repository reproduced first, as a user's would be (the end-to-end tests reuse it):
    # the clone then restores the `full` cell from the shared cache instead of retraining.
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "repro"], cwd=tiny_repo,
                   check=True, env=env, capture_output=True)  # fmt: skip
    before = _workspace(tiny_repo)
    workdir = tmp_path / "work"
    argv = ["ablate", "--repo", str(tiny_repo), "--seeds", "0", "--variants", "full",
            "no_face_guidance", "--workdir", str(workdir)]  # fmt: skip
    assert main(argv) == 0
    out, html = tiny_repo / "data/metrics/ablation.json", tiny_repo / "data/metrics/ablation.html"
    document = json.loads(out.read_text())
    cells = {(c["variant"], c["seed"]): c for c in document["cells"]}
    assert set(cells) == {("full", 0), ("no_face_guidance", 0)}
    for cell in cells.values():
        for mode in ("none", "sg", "dg"):
            metrics = cell["evaluate"][mode]
            assert isinstance(metrics["sync_corpus_c"], float), (cell["variant"], mode)
            assert {"psnr_face", "psnr_hand", "bas", "fgd", "fvd"} <= set(metrics)
        for kind in ("face", "nonface"):
            assert {"heldout_auc", "heldout_auc_t000_249"} <= set(cell["classifier"][kind])
    # The variant only changes inference: the classifiers were restored, not retrained.
    assert cells[("full", 0)]["classifier"] == cells[("no_face_guidance", 0)]["classifier"]
    (log,) = workdir.glob("state-*/logs/no_face_guidance-seed0.log")
    text = log.read_text()
    assert "Running stage 'infer@sg'" in text and "Running stage 'evaluate'" in text
    assert "Running stage 'train_" not in text and "Running stage 'negatives'" not in text
    claims = {d["claim"] for d in document["directions"]}
    assert {"face guidance on vs off", "DG vs SG"} <= claims
    assert {d["verdict"] for d in document["directions"]} <= {"within noise", "not measured"}
    assert "no_face_guidance" in html.read_text()
    # The tiny repo's workspace: only the two output files are new.
    after = _workspace(tiny_repo)
    assert set(after) - set(before) == {"data/metrics/ablation.json", "data/metrics/ablation.html"}
    assert {k: v for k, v in after.items() if k in before} == before
    # A rerun finds both cells in the file and runs nothing.
    assert main(argv) == 0
    assert json.loads(out.read_text())["cells"] == document["cells"]


# A toy DAG with the pipeline's shapes (a persistent training output, foreach classifiers with
# uncached metrics, infer, evaluate) whose stages only write JSON: it checks the scratch clone,
# the baselines and what reruns in seconds, where the tiny repo takes minutes.
TOY_STAGE = """
import json, os, sys
from pathlib import Path
import yaml
p = yaml.safe_load(open("params.yaml"))
stage = sys.argv[1]
def dump(path, data):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data))
if stage == "train":
    u = p["train_univdm"]
    dump("data/models/univdm/final.json", {"seed": u["seed"], "par": u["par"]["enabled"]})
    dump("data/metrics/train_univdm.json", {"loss": 1.0 + u["seed"]})
elif stage.startswith("classifier"):
    kind = stage.split("@")[1]
    auc = 0.8 + 0.01 * p["train_classifier"][kind]["seed"]
    dump(f"data/models/classifier/{kind}/final.json", {"auc": auc})
    dump(f"data/metrics/train_classifier_{kind}.json", {"heldout_auc": auc, "pairs": 3})
elif stage == "infer":
    model = json.load(open("data/models/univdm/final.json"))
    dump("data/infer/out.json", {"model": model, "lambda_face": p["infer"]["lambda_face"]})
elif stage == "evaluate":
    out = json.load(open("data/infer/out.json"))
    psnr = 10 + 0.1 * out["model"]["seed"]
    modes = {mode: {"clips": 2, "psnr_face": psnr + k, "sync_corpus_c": out["lambda_face"] + k,
                    "fvd": None} for k, mode in enumerate(["none", "sg", "dg"])}
    dump("data/metrics/evaluate.json", {"modes": modes})
"""
TOY_DAG = {"stages": {
    "train": {"cmd": "python toy.py train", "deps": ["toy.py"],
              "params": ["train_univdm.seed", "train_univdm.par.enabled"],
              "outs": [{"data/models/univdm": {"persist": True}}],
              "metrics": [{"data/metrics/train_univdm.json": {"cache": False}}]},
    "classifier": {"foreach": ["face", "nonface"], "do": {
        "cmd": "python toy.py classifier@${item}", "deps": ["toy.py", "data/models/univdm"],
        "params": ["train_classifier.${item}.seed"],
        "outs": [{"data/models/classifier/${item}": {"persist": True}}],
        "metrics": [{"data/metrics/train_classifier_${item}.json": {"cache": False}}]}},
    # Deps are outputs or inside them, as in dvc.yaml (a folder holding outputs would also hold
    # the .gitignore files DVC writes beside them, which `dvc checkout` does not restore).
    "infer": {"cmd": "python toy.py infer",
              "deps": ["toy.py", "data/models/univdm", "data/models/classifier/face",
                       "data/models/classifier/nonface"],
              "params": ["infer"], "outs": ["data/infer"]},
    "evaluate": {"cmd": "python toy.py evaluate", "deps": ["toy.py", "data/infer"],
                 "metrics": [{"data/metrics/evaluate.json": {"cache": False}}]},
}}  # fmt: skip


def _toy_repo(repo: Path) -> Path:
    """A committed git + DVC repository of the toy DAG, reproduced once (its lock uncommitted,
    as after a `dvc repro` in a working copy)."""
    repo.mkdir()
    (repo / "toy.py").write_text(TOY_STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(TOY_DAG, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["infer"]["lambda_face"] = 0.1  # the toy's figures below follow it, not the profile's
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                        "DVC_NO_ANALYTICS": "1"}  # fmt: skip
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (
        [*git, "init", "-q"],
        [str(bin_dir / "dvc"), "init", "-q"],
        [*git, "add", "-A"],
        [*git, "commit", "-qm", "toy"],
        [str(bin_dir / "dvc"), "repro", "-q"],
    ):
        subprocess.run(args, cwd=repo, env=env, check=True, capture_output=True)  # fmt: skip
    return repo


def test_cells_run_in_a_scratch_clone_from_the_seed_s_full_baseline(tmp_path):
    repo = _toy_repo(tmp_path / "toy")
    before = _workspace(repo)
    workdir, out = tmp_path / "work", repo / "data/metrics/ablation.json"
    html = out.with_suffix(".html")
    run_ablation(repo, ["no_face_guidance", "full"], [0], workdir, out, html)
    # A second grid resumes the file: only seed 1's full run is new.
    document = run_ablation(repo, ["full"], [0, 1], workdir, out, html)

    def ran(variant: str, seed: int) -> set[str]:
        (log,) = workdir.glob(f"state-*/logs/{variant}-seed{seed}.log")
        return set(re.findall(r"Running stage '([^']+)'", log.read_text()))

    assert ran("full", 0) == set()  # the original's outputs, restored from its cache
    # From seed 0's full run: the classifiers and the trained model are restored, not rerun.
    assert ran("no_face_guidance", 0) == {"infer", "evaluate"}
    assert ran("full", 1) == {"train", "classifier@face", "classifier@nonface", "infer",
                              "evaluate"}  # fmt: skip
    cells = {(c["variant"], c["seed"]): c for c in document["cells"]}
    assert set(cells) == {("full", 0), ("no_face_guidance", 0), ("full", 1)}
    assert cells[("full", 1)]["evaluate"]["sg"] == {"psnr_face": 11.1, "sync_corpus_c": 1.1,
                                                    "fvd": None}  # fmt: skip
    assert cells[("no_face_guidance", 0)]["evaluate"]["sg"]["sync_corpus_c"] == 1.0
    assert cells[("full", 1)]["classifier"] == {"face": {"heldout_auc": 0.81},
                                                "nonface": {"heldout_auc": 0.81}}  # fmt: skip
    sync = [d for d in document["directions"] if d["metric"] == "sync_corpus_c"
            and d["claim"] == "face guidance on vs off"]  # fmt: skip
    assert sync[0]["deltas"] == [0.1] and sync[0]["verdict"] == "within noise"  # one seed
    after = _workspace(repo)
    assert set(after) - set(before) == {"data/metrics/ablation.json", "data/metrics/ablation.html"}
    assert {k: v for k, v in after.items() if k in before} == before

"""Running the ablation grid: one scratch clone sharing the repository's DVC cache, each cell
started from its baseline, ``dvc repro`` with the cell's overrides, its metrics read back, and
``ablation.json`` rewritten after every cell (:func:`run_ablation`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import parse_params
from pipeline.errors import ConfigError, InputError
from pipeline.io.outputs import atomic_directory
from pipeline.orchestration.ablation.grid import (
    STARTS_FROM,
    cell_overrides,
    load_cells,
    machine_fingerprint,
    pending_cells,
    replicate,
    set_dotted,
    starts_from,
)
from pipeline.orchestration.ablation.report import write_outputs
from pipeline.orchestration.ablation.statistics import as_number, rounded

log = logging.getLogger("paha.ablation")


GENERATED_MODES = ("none", "sg", "dg")


CLASSIFIER_KINDS = ("face", "nonface")


EVALUATE_METRICS = "data/metrics/evaluate.json"


CLASSIFIER_METRICS = "data/metrics/train_classifier_{kind}.json"


# Counts in evaluate.json's modes that are bookkeeping, not metrics.
COUNT_KEYS = frozenset({"clips", "clips_with_pose", "gesture_windows"})


def run_grid(cells: Sequence[Mapping], todo: Sequence[tuple[str, int]],
             run_cell: Callable[[str, int], dict], out: Path,
             html: Path | None = None) -> dict:  # fmt: skip
    """Run the ``todo`` cells with ``run_cell(variant, seed) -> cell`` and rewrite the outputs
    after each one, so an interrupted grid keeps what it finished; return the final document.
    A new cell replaces only the cell of the same variant and replicate."""
    cells = [dict(c) for c in cells]
    for i, (variant, seed) in enumerate(todo, 1):
        started = time.perf_counter()
        print(f"[ablate] {i}/{len(todo)}: {variant} seed {seed}", file=sys.stderr, flush=True)
        cell = run_cell(variant, seed)
        key = (cell["variant"], *replicate(cell))
        cells = [c for c in cells if (c["variant"], *replicate(c)) != key] + [cell]
        write_outputs(cells, out, html)
        print(f"[ablate] {variant} seed {seed} done in {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return write_outputs(cells, out, html)


class AblationRunFailed(RuntimeError):
    """``dvc repro`` (or the clone's set-up) failed for a cell; the log's tail is in the message."""


def _bin() -> Path:
    return Path(sys.executable).parent


def _env() -> dict[str, str]:
    # The stage commands say `python`: the interpreter running paha must come first on PATH.
    # GIT_OPTIONAL_LOCKS=0: `git status` in the original does not even refresh its index.
    return os.environ | {"PATH": f"{_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
                         "DVC_NO_ANALYTICS": "1", "GIT_OPTIONAL_LOCKS": "0"}  # fmt: skip


def _dvc() -> str:
    dvc = _bin() / "dvc"
    return str(dvc) if dvc.exists() else "dvc"


def _run(argv: Sequence[str], cwd: Path) -> str:
    """Run a short command (git, dvc config); its stdout, or AblationRunFailed with its output."""
    proc = subprocess.run(list(argv), cwd=cwd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AblationRunFailed(f"{' '.join(argv)} (in {cwd}) failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _run_logged(argv: Sequence[str], cwd: Path, log_path: Path) -> int:
    """Run a long command with stdout and stderr appended to ``log_path``; its exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.run(list(argv), cwd=cwd, env=_env(), stdout=handle,
                              stderr=subprocess.STDOUT)  # fmt: skip
    return proc.returncode


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def uncached_outputs(root: Path) -> list[str]:
    """Outputs of ``root/dvc.yaml`` with ``cache: false`` (metrics, timings, DVCLive curves):
    ``dvc checkout`` does not restore them, so a baseline keeps copies."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return sorted({str(o.def_path) for s in repo.index.stages for o in s.outs
                       if not o.use_cache})  # fmt: skip


def share_cache(repo: Path, clone: Path) -> None:
    """Point ``clone``'s DVC cache (its ``.dvc/config.local``) at ``repo``'s cache directory:
    outputs and run-cache entries are shared both ways."""
    from dvc.repo import Repo

    with Repo(str(repo)) as original:
        cache = original.cache.local_cache_dir
    with Repo(str(clone)) as scratch, scratch.config.edit("local") as config:
        config["cache"]["dir"] = cache


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    elif src.is_file():
        shutil.copy2(src, dst)


def save_baseline(root: Path, dest: Path, paths: Sequence[str]) -> None:
    """Keep ``root``'s ``dvc.lock`` and the uncached outputs ``paths`` under ``dest``."""
    with atomic_directory(dest) as tmp:
        _copy(root / "dvc.lock", tmp / "dvc.lock")
        for path in paths:
            _copy(root / path, tmp / "files" / path)


def restore_baseline(baseline: Path, clone: Path, paths: Sequence[str], log_path: Path) -> None:
    """Put the clone's workspace back to ``baseline``: its lock file and uncached outputs, then
    ``dvc checkout --force`` for the cached ones. Outputs missing from the cache are logged;
    ``dvc repro`` then reruns their stages. (Checkout does not write the ``.gitignore`` files
    DVC keeps beside outputs; no dependency in dvc.yaml is a folder that holds outputs, so none
    sees them.)"""
    for path in paths:
        _remove(clone / path)
        _copy(baseline / "files" / path, clone / path)
    _remove(clone / "dvc.lock")
    _copy(baseline / "dvc.lock", clone / "dvc.lock")
    if (clone / "dvc.lock").exists() and _run_logged(
        [_dvc(), "checkout", "--force"], clone, log_path
    ):
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write("note: dvc checkout could not restore every output; dvc repro reruns "
                         "the stages of the missing ones\n")  # fmt: skip


def _load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML().load(text)  # round trip: DVC's own YAML reading, comments kept


def _dump_yaml(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def _plain(data: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (for pydantic)."""
    return json.loads(json.dumps(data))


@dataclass(frozen=True)
class ScratchClone:
    """The clone the grid runs in.

    Attributes:
        repo: the original repository (only its cache is written, through DVC).
        root: the clone (HEAD of ``repo``, detached).
        state: baselines and logs of this commit's cells.
        commit: the commit the clone is at.
        uncached: the uncached outputs of ``dvc.yaml`` (see :func:`uncached_outputs`).
        machine: :func:`machine_fingerprint` of the machine the cells run on.
    """

    repo: Path
    root: Path
    state: Path
    commit: str
    uncached: tuple[str, ...]
    machine: str | None = None

    def base_params(self) -> Any:
        """params.yaml as committed (ruamel round-trip data)."""
        return _load_yaml(_run(["git", "show", f"{self.commit}:params.yaml"], self.root))

    def params_for(self, overrides: Mapping[str, Any]) -> Any:
        """The committed params with ``overrides`` set, validated (ConfigError names a bad
        override before anything runs)."""
        params = self.base_params()
        for key, value in overrides.items():
            set_dotted(params, key, value)
        parse_params(_plain(params), f"params.yaml with overrides {dict(overrides)}")
        return params


def prepare_clone(repo: Path, workdir: Path, machine: str | None = None) -> ScratchClone:
    """The scratch clone of ``repo``'s HEAD under ``workdir`` (reused when it exists), with its
    DVC cache pointing at ``repo``'s, and the starting baseline (``repo``'s lock file and
    uncached outputs)."""
    repo, workdir = repo.resolve(), workdir.resolve()
    if not repo.is_dir():
        raise InputError(f"{repo}: no such repository")
    try:
        commit = _run(["git", "rev-parse", "--verify", "HEAD"], repo).strip()
    except AblationRunFailed:
        raise InputError(f"{repo}: not a git repository with a commit (the ablation runs a "
                         "clone of HEAD)") from None  # fmt: skip
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], repo).strip():
        log.warning("%s has uncommitted changes: the grid runs HEAD (%s) without them", repo,
                    commit[:12])  # fmt: skip
    root, state = workdir / f"clone-{commit[:12]}", workdir / f"state-{commit[:12]}"
    if not (root / ".git").is_dir():
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f".clone-{commit[:12]}.tmp-{os.getpid()}"
        _remove(tmp)
        _run(["git", "clone", "--quiet", str(repo), str(tmp)], workdir)
        _run(["git", "checkout", "--quiet", "--detach", commit], tmp)
        share_cache(repo, tmp)
        os.replace(tmp, root)
    uncached = tuple(uncached_outputs(root))
    save_baseline(repo, state / "start", uncached)  # the original's latest state, each run
    return ScratchClone(repo, root, state, commit, uncached, machine)


def read_cell_metrics(root: Path) -> dict:
    """The metrics a cell records from a finished run under ``root``: ``evaluate`` (per infer
    mode: every metric of evaluate.json, counts left out) and ``classifier`` (per kind: the
    held-out AUCs, per noise bucket, shifted audio and other clip's audio)."""

    def read(relative: str) -> dict:
        path = root / relative
        if not path.is_file():
            raise AblationRunFailed(f"{path}: missing after dvc repro")
        return json.loads(path.read_text(encoding="utf-8"))

    def values(figures: Mapping, keep: Callable[[str], bool]) -> dict:
        # Numbers and nulls (a null metric stays, with its reason in the run's own file).
        return {k: rounded(as_number(v)) for k, v in figures.items()
                if keep(k) and (v is None or as_number(v) is not None)}  # fmt: skip

    evaluation = read(EVALUATE_METRICS)["modes"]
    return {
        "evaluate": {mode: values(evaluation[mode], lambda k: k not in COUNT_KEYS)
                     for mode in GENERATED_MODES if mode in evaluation},
        "classifier": {kind: values(read(CLASSIFIER_METRICS.format(kind=kind)),
                                    lambda k: "auc" in k.split("_"))
                       for kind in CLASSIFIER_KINDS},
    }  # fmt: skip


def run_cell(clone: ScratchClone, variant: str, seed: int) -> dict:
    """Run one (variant, seed) in the clone: restore the seed's baseline, write the overrides
    into params.yaml, ``dvc repro``, read the metrics (and keep ``full``'s state as the seed's
    baseline; likewise every variant another starts from)."""
    overrides = cell_overrides(variant, seed)
    log_path = clone.state / "logs" / f"{variant}-seed{seed}.log"
    _remove(log_path)
    candidates = [clone.state / f"baseline-{parent}-seed{seed}"
                  for parent in (starts_from(variant), "full") if parent]  # fmt: skip
    start = next((c for c in candidates if c.exists()), clone.state / "start")
    restore_baseline(start, clone.root, clone.uncached, log_path)
    (clone.root / "params.yaml").write_text(_dump_yaml(clone.params_for(overrides)),
                                            encoding="utf-8")  # fmt: skip
    if _run_logged([_dvc(), "repro"], clone.root, log_path):
        raise AblationRunFailed(f"{variant} seed {seed}: dvc repro failed in {clone.root} "
                                f"(log {log_path}):\n{_tail(log_path)}")  # fmt: skip
    cell = {"variant": variant, "seed": int(seed), "overrides": overrides, "commit": clone.commit,
            "machine": clone.machine} | read_cell_metrics(clone.root)  # fmt: skip
    if variant == "full" or variant in STARTS_FROM.values():
        save_baseline(clone.root, clone.state / f"baseline-{variant}-seed{seed}", clone.uncached)
    return cell


def run_ablation(repo: str | os.PathLike, variants: Sequence[str], seeds: Sequence[int],
                 workdir: str | os.PathLike, out: str | os.PathLike,
                 html: str | os.PathLike | None = None) -> dict:  # fmt: skip
    """Run the missing cells of ``variants`` x ``seeds`` (:mod:`pipeline.orchestration.ablation`)
    and write ``out`` (ablation.json) and ``html`` after each; return the final document."""
    repo, workdir, out = Path(repo), Path(workdir), Path(out)
    html = None if html is None else Path(html)
    for variant in variants:
        cell_overrides(variant, 0)  # unknown names fail here
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)}")
    cells = load_cells(out)
    machine = machine_fingerprint()
    todo = pending_cells(cells, variants, seeds, machine)
    if not todo:
        return write_outputs(cells, out, html)
    clone = prepare_clone(repo, workdir, machine)
    for variant, seed in todo:  # every override is checked before hours of compute
        clone.params_for(cell_overrides(variant, seed))
    return run_grid(cells, todo, lambda v, s: run_cell(clone, v, s), out, html)

"""Prefect flows over the DVC DAG: the same stage commands, cached, sharded and GPU-limited.

The DAG is read from ``dvc.yaml`` through DVC's own API (:mod:`pipeline.orchestration.dag`), so
there is no second definition of the stages: a task runs a stage's ``cmd`` exactly as
``dvc repro`` would (a subprocess, ``python -m stages.NAME ...``, no shell).

Cache key of a stage (:func:`stage_key`): SHA-256 of the stage's command, the values of the
params it declares, and the content hash of every dependency it declares, which covers its code
(``stages/X.py`` and the ``pipeline/`` modules it lists) and its input artifacts (upstream outputs).
Results (a manifest of the outputs' content hashes) persist under ``storage``; a second run with
nothing changed finds every key and runs nothing, and a changed parameter changes the keys of
that stage and, through its new outputs, of what follows only.

A cached stage whose outputs are no longer those of its manifest (deleted, or overwritten by
another configuration) is recomputed rather than trusted.

GPU stages (:func:`gpu_stages`: those whose dvc.yaml params name ``runtime.device``, read through
:mod:`pipeline.orchestration.dag`, so the list is never kept by hand) hold one slot of the global
concurrency limit ``gpu`` while they run. The :data:`SHARDED_STAGES` (``cut``, ``curate``,
``extract``, ``negatives``, ``infer``) are split into ``shards`` tasks (``--shard i/n``), a GPU
stage's shard ``i`` pinned to ``devices[i % len(devices)]`` through ``CUDA_VISIBLE_DEVICES``,
then merged (``--merge n``). The stages write shards and outputs
atomically (temp folder, then rename), so a killed task leaves the previous artifact in place
and a retried one redoes only its own shard.

After the run, ``dvc commit`` records the outputs of the stages of the flow, so ``dvc status``
and ``dvc repro`` agree that the pipeline is up to date; with ``push``, ``dvc push`` then sends
them to the project's default DVC remote (a team shares artifacts that way: a fresh clone
runs ``dvc pull`` and finds ``dvc status`` clean).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import flow

from pipeline.orchestration.dag import StageSpec, load_dag, select

log = logging.getLogger("paha.flows")

# Stages with `--shard i/n` / `--merge n` (pipeline.io.shards): the data half and the sampling.
SHARDED_STAGES = frozenset({"cut", "curate", "extract", "negatives", "infer"})
GPU_LIMIT = "gpu"
_TEMPORARY = re.compile(r"^\..+\.(tmp|old)-\d+$")


class StageFailed(RuntimeError):
    """A stage command exited non-zero (its last output lines are in the message)."""


def gpu_stages(specs: Mapping[str, StageSpec]) -> frozenset[str]:
    """Base names of the stages of ``specs`` (:func:`load_dag`) that run on the device: those
    whose params name ``runtime.device`` (:attr:`StageSpec.uses_device`)."""
    return frozenset(spec.base for spec in specs.values() if spec.uses_device)


def content_hash(path: str | os.PathLike, memo: dict | None = None) -> str:
    """MD5 of a file, or of a folder's sorted (relative path, file MD5) list; else ``missing``.

    ``memo`` (one flow run's) maps (path, size, mtime) to a file's MD5: an upstream output is a
    dependency of several stages, and is read once per run instead of once per stage.
    """
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        token = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if memo is not None and token in memo:
            return memo[token]
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if memo is not None:
            memo[token] = digest.hexdigest()
        return digest.hexdigest()
    if path.is_dir():
        # Temporaries of an interrupted write (.NAME.tmp-PID, .NAME.old-PID; .dvcignore'd) are
        # not part of an output.
        entries = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            _TEMPORARY.match(part) for part in p.relative_to(path).parts))  # fmt: skip
        listing = "\n".join(f"{p.relative_to(path).as_posix()} {content_hash(p, memo)}"
                            for p in entries)  # fmt: skip
        return hashlib.md5(listing.encode()).hexdigest()
    return "missing"


def param_value(params: dict, dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = value[part]
    return value


def stage_key(root: str | os.PathLike, spec: StageSpec, params: dict,
              memo: dict | None = None) -> str:  # fmt: skip
    """The cache key of ``spec``: command, declared params' values, declared deps' contents."""
    root = Path(root)
    record = {
        "stage": spec.name, "cmd": spec.cmd,
        "params": {p: param_value(params, p) for p in spec.params},
        "deps": {d: content_hash(root / d, memo) for d in spec.deps},
    }  # fmt: skip
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _key_from_parameters(_context: Any, parameters: dict) -> str:
    return parameters["key"]


def run_command(root: str, name: str, argv: list[str], key: str, outs: list[str], gpu: bool,
                device: str | None) -> dict:  # fmt: skip
    """Run one stage command (a task body); returns the manifest of its outputs.

    ``key`` is unused here: it is what Prefect caches the result under.
    """
    from prefect.concurrency.sync import concurrency

    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    started = time.time()
    with concurrency(GPU_LIMIT, occupy=1) if gpu else nullcontext():
        began = time.time()  # after the GPU slot was granted
        proc = subprocess.run([sys.executable if a == "python" else a for a in argv], cwd=root,
                              env=env, capture_output=True, text=True)  # fmt: skip
    ended = time.time()
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StageFailed(f"{name}: `{shlex.join(argv)}` exited {proc.returncode}:\n{tail}")
    return {
        "stage": name, "key": key, "outs": {o: content_hash(Path(root) / o) for o in outs},
        "queued": started, "started": began, "ended": ended, "host": socket.gethostname(),
        "pid": os.getpid(), "device": device,
    }  # fmt: skip


def stage_task(storage: str | os.PathLike, retries: int = 2):
    """The Prefect task that runs stage commands, cached by key under ``storage``."""
    from prefect import task
    from prefect.filesystems import LocalFileSystem

    basepath = str(Path(storage).resolve())
    # Prefect wants result storage saved server-side; one block per storage path.
    block = LocalFileSystem(basepath=basepath)
    block.save(f"paha-results-{hashlib.md5(basepath.encode()).hexdigest()[:12]}", overwrite=True)
    return task(
        run_command, name="stage", cache_key_fn=_key_from_parameters, persist_result=True,
        result_storage=block,
        result_serializer="json", retries=retries, retry_delay_seconds=2,
        task_run_name="{name}",
    )  # fmt: skip


def ensure_gpu_limit(slots: int) -> None:
    """Create (or resize) the global concurrency limit ``gpu`` with ``slots`` slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
            client.update_global_concurrency_limit(
                GPU_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, active=True)
            )
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=slots, active=True)
            )


def command_flow(root: str, name: str, argv: list[str], key: str, outs: list[str], gpu: bool,
                 device: str | None, storage: str, retries: int = 2,
                 refresh: bool = False) -> dict:  # fmt: skip
    """One stage command as a flow run of its own: what a work-pool worker executes.

    The command runs as the cached :func:`stage_task`, so a pool shares the task cache (and
    ``storage``) with local runs; ``cached`` says whether it was a cache hit. ``refresh``
    recomputes even on a hit (its outputs were found changed).
    """
    task = stage_task(storage, retries).with_options(refresh_cache=refresh)
    future = task.submit(root, name, argv, key, outs, gpu, device)
    return {**future.result(), "cached": future.state.name == "Cached"}


def dispatch_command(deployment: str, storage: str, root: str, name: str, argv: list[str],
                     key: str, outs: list[str], gpu: bool, device: str | None,
                     refresh: bool = False) -> dict:  # fmt: skip
    """Run one stage command as a flow run of ``deployment`` (a worker of its pool runs it)."""
    from prefect.deployments import run_deployment

    parameters = {"root": root, "name": name, "argv": argv, "key": key, "outs": outs,
                  "gpu": gpu, "device": device, "storage": storage,
                  "refresh": refresh}  # fmt: skip
    run = run_deployment(deployment, parameters=parameters, timeout=None)
    if not run.state.is_completed():
        raise StageFailed(f"{name}: flow run {run.name} of {deployment} ended {run.state.name}")
    return run.state.result()


@dataclass
class Submission:
    """The tasks of one stage: ``calls`` = (future, submitted arguments), the last counts."""

    name: str
    calls: list[tuple[Any, tuple]]


def _submit_stage(task, root: str, spec: StageSpec, key: str, shards: int,
                  devices: Sequence[str]) -> Submission:  # fmt: skip
    gpu = spec.uses_device
    calls = []

    def submit(args: tuple, wait_for: list) -> Any:
        future = task.submit(*args, wait_for=wait_for)
        calls.append((future, args))
        return future

    if spec.base in SHARDED_STAGES and shards > 1:
        from pipeline.io.shards import shard_dir

        parts = []
        for i in range(shards):
            folder = shard_dir(spec.outs[0], i, shards).as_posix()
            device = devices[i % len(devices)] if gpu and devices else None
            args = (root, f"{spec.name}[{i}/{shards}]", spec.argv + ["--shard", f"{i}/{shards}"],
                    f"{key}:shard-{i}-of-{shards}", [folder], gpu, device)  # fmt: skip
            parts.append(submit(args, []))
        submit((root, f"{spec.name}[merge]", spec.argv + ["--merge", str(shards)],
                f"{key}:merge-{shards}", list(spec.outs), False, None), parts)  # fmt: skip
    else:
        device = devices[0] if gpu and devices else None
        submit((root, spec.name, spec.argv, key, list(spec.outs), gpu, device), [])
    return Submission(spec.name, calls)


def _outputs_match(root: str, manifest: dict, memo: dict) -> bool:
    return all(content_hash(Path(root) / o, memo) == h for o, h in manifest["outs"].items())


def _collect(root: str, submission: Submission, report: dict, rerun: Callable[[tuple], dict],
             memo: dict) -> None:  # fmt: skip
    """Wait for a stage's tasks; ``rerun`` (ignoring the cache) a task whose cached outputs
    are not in place."""
    for future, args in submission.calls:
        manifest = future.result()
        cached = manifest.pop("cached", future.state.name == "Cached")
        state = "cached" if cached else "computed"
        if state == "cached" and not _outputs_match(root, manifest, memo):
            log.warning("%s: cached, but its outputs changed since: recomputing", args[1])
            manifest = rerun(args)
            state = "computed"
        report["tasks"].append({**manifest, "state": state})
    report["stages"][submission.name] = report["tasks"][-1]


def run_dag(root: str | os.PathLike = ".", targets: Sequence[str] | None = None, shards: int = 1,
            devices: Sequence[str] = (), gpu_slots: int = 1, storage: str | None = None,
            commit: bool = True, retries: int = 2, upstream: bool = True,
            pool_deployment: str | None = None, push: bool = False) -> dict:  # fmt: skip
    """The body of the flows (call it inside a flow).

    Stages are submitted as soon as their upstream stages have finished (their cache keys need
    the upstream outputs' contents), so independent stages run side by side.

    With ``pool_deployment`` (a deployment of :data:`paha_command`), every command runs as a
    flow run on the workers of that deployment's work pool instead of the local task runner.

    Returns ``{"stages": {name: manifest + state}, "tasks": [...]}``: ``state`` is ``computed``
    or ``cached``; ``tasks`` lists every task (shards included) with timing, host and device.
    """
    from prefect.futures import wait

    root = str(Path(root).resolve())
    specs = load_dag(root)
    chosen = select(specs, targets)  # unknown names raise
    if targets and not upstream:
        chosen = [name for name in chosen if name in targets]
    storage = storage or str(Path(root) / ".prefect-cache")
    if pool_deployment:
        # Each command becomes a flow run of the deployment, picked up by a worker of its pool;
        # workers own their GPU (CUDA_VISIBLE_DEVICES set when the worker starts).
        from functools import partial

        from prefect import task as as_task

        task = as_task(partial(dispatch_command, pool_deployment, storage), name="dispatch",
                       task_run_name="{name}")  # fmt: skip

        def rerun(args: tuple) -> dict:
            return task(*args, refresh=True)

        devices = ()
    else:
        task = stage_task(storage, retries)

        def rerun(args: tuple) -> dict:
            return task.with_options(refresh_cache=True)(*args)

    ensure_gpu_limit(gpu_slots)
    params = yaml.safe_load((Path(root) / "params.yaml").read_text())
    report: dict = {"stages": {}, "tasks": []}
    running: dict[str, Submission] = {}
    memo: dict = {}  # file hashes of this run
    while len(report["stages"]) < len(chosen):
        for name in chosen:
            spec = specs[name]
            ready = all(u in report["stages"] or u not in chosen for u in spec.upstream)
            if name not in running and ready:
                key = stage_key(root, spec, params, memo)
                running[name] = _submit_stage(task, root, spec, key, shards, devices)
        pending = {n: s for n, s in running.items() if n not in report["stages"]}
        finals = {s.calls[-1][0]: n for n, s in pending.items()}
        done = wait(list(finals), timeout=1.0).done
        for future in done:
            _collect(root, pending[finals[future]], report, rerun, memo)
    if commit:
        commit_outputs(root, chosen)
    if push:
        push_outputs(root, chosen)
    return report


def _dvc_argv() -> list[str]:
    """The venv's ``dvc`` when it is beside this Python (stage commands run under it)."""
    dvc = Path(sys.executable).with_name("dvc")
    return [str(dvc) if dvc.exists() else "dvc"]


def _dvc(root: str, *args: str) -> subprocess.CompletedProcess:
    command = [*_dvc_argv(), *args]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageFailed(f"dvc {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def commit_outputs(root: str, stages: Sequence[str]) -> None:
    """``dvc commit -f`` the stages (records their deps/outs in dvc.lock and the DVC cache)."""
    _dvc(root, "commit", "-f", *stages)


def push_outputs(root: str, stages: Sequence[str]) -> None:
    """``dvc push`` the stages' outputs to the default remote (``dvc remote add -d``).

    Raises :class:`StageFailed` when no default remote is configured (say which command sets
    one) or the push fails."""
    default = subprocess.run([*_dvc_argv(), "remote", "default"], cwd=root, capture_output=True,
                             text=True)  # fmt: skip
    if default.returncode != 0 or not default.stdout.strip():
        raise StageFailed("--push: no default DVC remote; set one with "
                          "`dvc remote add -d NAME URL`")  # fmt: skip
    _dvc(root, "push", *stages)


def dag_flow(root: str = ".", targets: list[str] | None = None, shards: int = 1,
             devices: list[str] | None = None, gpu_slots: int = 1, storage: str | None = None,
             commit: bool = True, pool_deployment: str | None = None,
             push: bool = False) -> dict:  # fmt: skip
    """The whole DAG (or ``targets`` and what they need) as one Prefect flow run."""
    return run_dag(root, targets, shards, devices or [], gpu_slots, storage, commit,
                   pool_deployment=pool_deployment, push=push)  # fmt: skip


def stage_flow(
    stage: str,
    root: str = ".",
    shards: int = 1,
    devices: list[str] | None = None,
    gpu_slots: int = 1,
    storage: str | None = None,
    commit: bool = True,
    push: bool = False,
) -> dict:
    """One stage (e.g. ``negatives``, ``infer@dg``) whose upstream outputs are already there."""
    return run_dag(root, [stage], shards, devices or [], gpu_slots, storage, commit,
                   upstream=False, push=push)  # fmt: skip


def timeline(report: dict) -> str:
    """The task timeline as text: start / end seconds from the first task, host, device."""
    tasks = sorted((t for t in report["tasks"] if t["state"] == "computed"),
                   key=lambda t: t["started"])  # fmt: skip
    if not tasks:
        return "(no task computed: every stage was a cache hit)"
    zero = min(t["queued"] for t in tasks)
    lines = [f"{'task':32} {'state':9} {'start s':>8} {'end s':>8}  host:pid device"]
    for t in tasks:
        where = f"{t['host']}:{t['pid']} {t['device'] or '-'}"
        lines.append(f"{t['stage']:32} {t['state']:9} {t['started'] - zero:8.1f} "
                     f"{t['ended'] - zero:8.1f}  {where}")  # fmt: skip
    return "\n".join(lines)


paha_dag = flow(dag_flow, name="paha-dag", log_prints=True)
paha_stage = flow(stage_flow, name="paha-stage", log_prints=True)
paha_command = flow(command_flow, name="paha-command", persist_result=True,
                    flow_run_name="{name}")  # fmt: skip

__all__ = [
    "GPU_LIMIT", "SHARDED_STAGES", "StageFailed", "StageSpec", "command_flow", "commit_outputs",
    "content_hash", "dag_flow", "dispatch_command", "ensure_gpu_limit",
    "gpu_stages", "load_dag", "paha_command", "paha_dag", "paha_stage", "push_outputs",
    "run_command", "run_dag",
    "select", "stage_flow", "stage_key", "stage_task", "timeline",
]  # fmt: skip

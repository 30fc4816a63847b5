"""The DVC DAG as data: the stages of ``dvc.yaml``, read through DVC's own API, in DAG order.

There is no second definition of the stages: :func:`load_dag` asks DVC for every stage
(``foreach`` items expanded, e.g. ``infer@sg``) with its command, dependencies, params and
outputs; a stage's upstream stages are those producing an output that one of its dependencies
lies in (or contains). The order is a topological order (``graphlib``) that keeps ``dvc.yaml``'s
order wherever the dependencies allow.

A stage that runs networks declares :data:`DEVICE_PARAM` (``runtime.device``) among its params,
so that a change of device reruns it; that declaration is also what marks it as a GPU stage
(:attr:`StageSpec.uses_device`) for the flows.
"""

from __future__ import annotations

import heapq
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from pipeline.errors import InputError

DEVICE_PARAM = "runtime.device"


@dataclass(frozen=True)
class StageSpec:
    """One stage of ``dvc.yaml`` (``foreach`` items expanded, e.g. ``infer@sg``)."""

    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]
    upstream: tuple[str, ...]

    @property
    def base(self) -> str:
        """The stage's name without its ``foreach`` item (``infer@sg`` -> ``infer``)."""
        return self.name.split("@")[0]

    @property
    def uses_device(self) -> bool:
        """Whether the stage runs on ``runtime.device``: its params name :data:`DEVICE_PARAM`
        (or the whole ``runtime`` section)."""
        section = DEVICE_PARAM.split(".")[0]
        return any(p in (DEVICE_PARAM, section) for p in self.params)

    @property
    def argv(self) -> list[str]:
        """The command as an argument list (it is run without a shell)."""
        return shlex.split(self.cmd)


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both relative to the repository)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def topological_order(upstream: dict[str, set[str]], order: Sequence[str]) -> list[str]:
    """The nodes of ``upstream`` (node -> the nodes it needs) with every node after the nodes it
    needs; among nodes that are ready together, the one earliest in ``order`` comes first.

    Raises InputError naming the stages of a cycle.
    """
    rank = {name: i for i, name in enumerate(order)}
    sorter = TopologicalSorter(upstream)
    try:
        sorter.prepare()
    except CycleError as error:
        raise InputError(f"dvc.yaml: the stages {sorted(error.args[1])} form a cycle") from None
    ready = [(rank[n], n) for n in sorter.get_ready()]
    heapq.heapify(ready)
    result = []
    while ready:
        _, name = heapq.heappop(ready)
        result.append(name)
        sorter.done(name)
        for n in sorter.get_ready():
            heapq.heappush(ready, (rank[n], n))
    return result


def load_dag(root: str | os.PathLike = ".") -> dict[str, StageSpec]:
    """The stages of ``root/dvc.yaml`` in DAG order, with their upstream stages."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        raw = {}
        for stage in repo.index.stages:
            params = tuple(p for d in stage.deps if hasattr(d, "params") for p in d.params or [])
            deps = tuple(d.def_path for d in stage.deps if not hasattr(d, "params"))
            outs = tuple(o.def_path for o in stage.outs)
            raw[stage.name] = (stage.cmd, deps, params, outs)
    producers = {out: name for name, (_, _, _, outs) in raw.items() for out in outs}
    upstream = {
        name: {producers[o] for d in deps for o in producers
               if (inside(d, o) or inside(o, d)) and producers[o] != name}
        for name, (_, deps, _, _) in raw.items()
    }  # fmt: skip
    return {
        name: StageSpec(name, *raw[name], tuple(sorted(upstream[name])))
        for name in topological_order(upstream, list(raw))
    }


def select(specs: dict[str, StageSpec], targets: Sequence[str] | None) -> list[str]:
    """``targets`` and everything upstream of them (all stages when None), in DAG order."""
    if not targets:
        return list(specs)
    unknown = [t for t in targets if t not in specs]
    if unknown:
        raise InputError(f"unknown stages {unknown}; dvc.yaml has {list(specs)}")
    wanted: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(specs[name].upstream)
    return [name for name in specs if name in wanted]

"""The project files a stage's command runs: the code part of its ``deps`` in ``dvc.yaml``.

DVC reruns a stage only when one of its declared dependencies changes, so a stage must declare
every project file its command imports, transitively, or an edit to that file leaves stale
outputs behind. :func:`import_closure` follows the ``import`` statements of ``stages/NAME.py``
through the project (absolute and relative imports, including the ones inside functions that
load optional backends lazily: a static closure is a superset of what any one configuration
runs, which is what DVC needs), plus the package ``__init__.py`` files Python executes on the
way and the package data files those modules read (templates, sentence lists).

``python -m pipeline.cli.code_deps --check`` compares ``dvc.yaml`` with the closures
and names every stage and file that disagree; ``--write`` rewrites the code part of each
stage's ``deps`` (data dependencies and comments are kept).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGES = ("pipeline", "stages")
# Non-Python files read by a module at run time: (file or glob, the module that reads it).
PACKAGE_DATA = (
    ("pipeline/curation/report.html.j2", "pipeline/curation/report.py"),
    ("pipeline/evaluation/report.html.j2", "pipeline/evaluation/report.py"),
    ("pipeline/corpus/sample/sentences/*.txt", "pipeline/corpus/sample/render.py"),
    ("pipeline/orchestration/ablation/report.html.j2", "pipeline/orchestration/ablation/report.py"),
    ("pipeline/web/review.html.j2", "pipeline/web/review.py"),
    ("pipeline/web/examples/*", "pipeline/web/examples.py"),
)


def module_file(root: Path, module: str) -> Path | None:
    """The file of a project module (``pipeline.io.tables`` -> ``pipeline/io/tables.py``)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(root: Path, path: Path) -> set[str]:
    """Names of the modules ``path`` imports anywhere in its body (``from a import b`` gives
    ``a`` and, when ``a.b`` is a module, ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> Iterable[str]:
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def import_closure(root: str | Path, entry: str) -> list[str]:
    """Project files (relative POSIX paths, sorted) that running module ``entry`` imports."""
    root = Path(root).resolve()
    start = module_file(root, entry)
    if start is None:
        raise FileNotFoundError(f"{entry}: no such module under {root}")
    seen: set[Path] = set()
    stack = [module for name in [entry] for module in _with_parents(name)]
    while stack:
        path = module_file(root, stack.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in imported_modules(root, path):
            stack.extend(_with_parents(name))
    files = {p.relative_to(root).as_posix() for p in seen}
    for pattern, reader in PACKAGE_DATA:
        if reader in files:
            files.update(p.relative_to(root).as_posix() for p in sorted(root.glob(pattern)))
    return sorted(files)


def stage_entry(cmd: str) -> str | None:
    """The module a ``python -m MODULE ...`` or ``${runtime.launcher} -m MODULE ...`` command
    runs (the launcher is a params value: ``python``, ``accelerate launch ...``)."""
    argv = cmd.split()
    launcher = argv[0] in {"python", "python3"} or (
        argv[0].startswith("${") and argv[0].endswith("}")
    )
    if len(argv) >= 3 and launcher and argv[1] == "-m":
        return argv[2]
    return None


def _is_code(path: str) -> bool:
    return path.split("/")[0] in PACKAGES


def _expand(root: Path, declared: Iterable[str]) -> set[str]:
    """Declared code deps as files (a folder stands for every file under it)."""
    files = set()
    for dep in declared:
        path = root / dep
        if path.is_dir():
            files.update(
                p.relative_to(root).as_posix()
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            )
        else:
            files.add(dep)
    return files


def _stages(root: Path) -> dict:
    import yaml

    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _stage_body(stage: dict) -> dict:
    return stage.get("do", stage)


def mismatches(root: str | Path = ".") -> list[str]:
    """One line per (stage, file) where ``dvc.yaml``'s code deps and the import closure differ."""
    root = Path(root).resolve()
    problems = []
    for name, stage in _stages(root).items():
        body = _stage_body(stage)
        entry = stage_entry(body["cmd"])
        if entry is None:
            problems.append(f"{name}: command {body['cmd']!r} is not `python -m MODULE`")
            continue
        needed = set(import_closure(root, entry))
        declared = _expand(root, [d for d in body.get("deps", []) if _is_code(d)])
        problems += [
            f"{name}: imports {f} but dvc.yaml does not list it" for f in sorted(needed - declared)
        ]
        problems += [
            f"{name}: dvc.yaml lists {f} but its command does not import it"
            for f in sorted(declared - needed)
        ]
    return problems


def write_code_deps(root: str | Path = ".") -> None:
    """Rewrite each stage's code deps in ``dvc.yaml`` to its import closure (data deps first,
    then code, comments kept)."""
    from ruamel.yaml import YAML

    root = Path(root).resolve()
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    document = yaml.load(path.read_text(encoding="utf-8"))
    for stage in document["stages"].values():
        body = _stage_body(stage)
        entry = stage_entry(body["cmd"])
        data = [d for d in body.get("deps", []) if not _is_code(d)]
        body["deps"] = data + import_closure(root, entry)
    tmp = path.with_suffix(".yaml.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        yaml.dump(document, handle)
    tmp.replace(path)

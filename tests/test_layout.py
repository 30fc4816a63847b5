"""The package's dependencies point one way (DESIGN.md): cli -> orchestration -> evaluation,
inference, training (side by side) -> models, metrics -> data -> io; ``builders`` (params ->
objects) sits just below cli.

A module may import its own group, the top-level paper concepts (config, errors, keypoints, par)
and the groups below it; the check names the file and the import that breaks the rule.
"""

from pathlib import Path

from pipeline.orchestration.code_deps import imported_modules

ROOT = Path(__file__).resolve().parents[1]
TOP = {"config", "errors", "keypoints", "par"}
DATA_HALF = {"corpus", "curation", "features"}
# Exceptions, each with its reason: (importing group, imported module).
ALLOWED: set[tuple[str, str]] = set()
BELOW = {
    "top": set(),
    "io": set(),
    "data": {"io"},
    "models": {"io", "data"},
    "metrics": {"io", "data", "models"},
    "corpus": {"io", "data"},
    "curation": {"io", "data", "features"},
    "features": {"io", "data"},
    "training": {"io", "data", "models", "metrics"},
    "inference": {"io", "data", "models", "metrics"} | DATA_HALF,
    "evaluation": {"io", "data", "models", "metrics"} | DATA_HALF,
    "builders": {"io", "data", "models", "metrics", "inference", "evaluation"} | DATA_HALF,
    "orchestration": {"io"},
    "cli": {
        "io",
        "data",
        "models",
        "metrics",
        "inference",
        "evaluation",
        "orchestration",
        "builders",
        "web",
    }
    | DATA_HALF,
    # The browser pages (`paha demo`, `paha review`): entry points that cli starts.
    "web": {"io", "data", "models", "metrics", "inference", "builders"} | DATA_HALF,
}


def _group(path: Path) -> str:
    parts = path.relative_to(ROOT / "pipeline").parts
    return parts[0] if len(parts) > 1 else "top"


def test_imports_point_down_the_layers():
    problems = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        group = _group(path)
        for name in sorted(imported_modules(ROOT, path)):
            parts = name.split(".")
            if parts[0] != "pipeline" or len(parts) < 2:
                continue
            target = parts[1]
            module = ".".join(parts[:3])
            if target in TOP or target == group or (group, module) in ALLOWED:
                continue
            if target not in BELOW[group]:
                problems.append(f"{path.relative_to(ROOT)} ({group}) imports {name} ({target})")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)

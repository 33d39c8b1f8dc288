"""The package's shape: data flows one way. Every module belongs to a layer; it may import from its own layer
and the ones below, never from above, and no modules import each other in a circle (imports inside functions
count too: a lazy import is still a dependency). Read from the source, so it runs in a second.

    foundation  errors, options, io, paths, stats, device, versions, pages (HTML building blocks), the face
    tasks
    models, programs, adapters (other people's models behind the same sites)
    training    config, loaders, train, train_group, resume, evaluate, runs
    align       interventions and alignment
    jobs        the engine, the job cache, job costs
    analyses    explain, analysis, figures
    report
    reproduce
    cli
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
LAYERS = [
    ["numvars", "numvars.errors", "numvars.options", "numvars.io", "numvars.paths", "numvars.stats", "numvars.device",
     "numvars.versions", "numvars.pages", "numvars.explorer"],
    ["numvars.tasks"],
    ["numvars.models", "numvars.programs", "numvars.adapters"],
    ["numvars.config", "numvars.loaders", "numvars.train", "numvars.train_group", "numvars.resume",
     "numvars.evaluate", "numvars.runs"],
    ["numvars.align"],
    ["numvars.jobs"],
    ["numvars.explain", "numvars.analysis", "numvars.figures"],
    ["numvars.report", "numvars.report_trials"],
    ["numvars.reproduce"],
    ["numvars.cli"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = max(((i, prefix) for i, group in enumerate(LAYERS) for prefix in group
                if module == prefix or module.startswith(prefix + ".")), key=lambda ip: len(ip[1]), default=None)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")
    return best[0]


def imports(path: Path) -> set[str]:
    """The numvars modules a file imports (absolute names; `from X import y` counts y when it is a module)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    known = {module_name(p) for p in SRC.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "numvars"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "numvars":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in known else target)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in SRC.rglob("*.py")}


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
              for m, deps in sorted(graph().items()) for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    g = graph()
    state, circle = {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(g.get(m, ())):
            d = next((k for k in g if d == k), d)
            if state.get(d) == "open":
                circle.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif d in g and d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not circle, "\n".join(circle)


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a tasks module that imports the CLI is caught."""
    fake = SRC / "numvars" / "tasks.py"
    text = fake.read_text() + "\nfrom .cli import main  # noqa\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text if self == fake else
                        Path.__dict__["read_bytes"](self).decode())
    with pytest.raises(AssertionError, match="numvars.tasks .* imports numvars.cli"):
        test_no_module_imports_from_a_higher_layer()

"""Imports flow one way: cli -> pipeline/report -> stages -> models, data -> core. No circle.

Every import in the package is counted, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lcgan_lightning"

# layer of each module (longest matching prefix wins); a module may import its own layer or lower ones
LAYERS: dict[str, int] = {
    "lcgan_lightning.constants": 0,
    "lcgan_lightning.paths": 0,
    "lcgan_lightning.config": 0,
    "lcgan_lightning.config_tree": 0,
    "lcgan_lightning.metrics": 0,
    "lcgan_lightning.stats": 0,
    "lcgan_lightning.inference": 0,
    "lcgan_lightning.visual": 0,
    "lcgan_lightning.figures": 0,
    "lcgan_lightning.layout": 0,
    "lcgan_lightning.variants": 0,
    "lcgan_lightning.generator_families": 0,
    "lcgan_lightning.run_plan": 0,
    "lcgan_lightning.atomic_io": 0,
    "lcgan_lightning.paper_numbers": 0,
    "lcgan_lightning.checkpoint_io": 0,
    "lcgan_lightning.errors": 0,
    "lcgan_lightning.batch": 0,
    "lcgan_lightning.devices": 0,
    "lcgan_lightning.launch_check": 0,
    "lcgan_lightning.quiet": 0,
    "lcgan_lightning.data": 1,
    "lcgan_lightning.models": 1,
    "lcgan_lightning.selection": 2,
    "lcgan_lightning.synthesize": 2,
    "lcgan_lightning.training": 2,
    "lcgan_lightning.evaluation": 2,
    "lcgan_lightning.audit": 2,
    "lcgan_lightning.bench": 2,
    "lcgan_lightning.bench_operations": 2,
    "lcgan_lightning.bench_generators": 2,
    "lcgan_lightning.pipeline": 3,
    "lcgan_lightning.gpu_check": 3,
    "lcgan_lightning.report": 3,
    "lcgan_lightning.comparison": 3,
    "lcgan_lightning.console": 3,
    "lcgan_lightning.cli": 4,
}
# same layer, but neither may import the other
SEPARATE = [("lcgan_lightning.data", "lcgan_lightning.models")]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent / name.replace(".", "/")
    return base.is_dir() or base.with_suffix(".py").is_file()


def imports_of(source: str, me: str, is_package: bool = False) -> set[str]:
    """Project modules imported anywhere in `source` (module `me`; relative imports resolved)."""
    package = me if is_package else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lcgan_lightning")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("lcgan_lightning"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")}
    return out - {me}


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"{module} has no layer in tests/test_architecture.py")
    return LAYERS[best]


def graph() -> dict[str, set[str]]:
    return {
        module_name(p): imports_of(p.read_text(), module_name(p), p.name == "__init__.py")
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in g.items()
        if m != "lcgan_lightning"
        for d in sorted(deps)
        if d != "lcgan_lightning" and layer(d) > layer(m)
    ]


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (restricted to its own modules), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d not in g:
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_every_module_has_a_layer():
    missing = [m for m in graph() if m != "lcgan_lightning" and not any(m == p or m.startswith(p + ".") for p in LAYERS)]
    assert not missing, f"modules without a layer in tests/test_architecture.py: {missing}"


def test_no_import_points_up():
    upward = upward_imports(graph())
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("a,b", SEPARATE)
def test_separate_parts_of_one_layer(a, b):
    crossing = [
        f"{m} imports {d}"
        for m, deps in graph().items()
        for d in deps
        if (m.startswith(a) and d.startswith(b)) or (m.startswith(b) and d.startswith(a))
    ]
    assert not crossing, "\n".join(crossing)


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_checks_can_fail():
    """A planted upward import (inside a function) and a planted circle are found."""
    deps = imports_of("def f():\n    from lcgan_lightning.pipeline import Pipeline\n", "lcgan_lightning.data.x")
    assert deps == {"lcgan_lightning.pipeline"}
    assert upward_imports({"lcgan_lightning.data.x": deps})
    circle = {"lcgan_lightning.data.a": {"lcgan_lightning.data.b"}, "lcgan_lightning.data.b": {"lcgan_lightning.data.a"}}
    assert find_cycle(circle) == ["lcgan_lightning.data.a", "lcgan_lightning.data.b", "lcgan_lightning.data.a"]

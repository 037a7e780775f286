"""The import graph of the installed packages (``nut_ros``, ``engine``), read with ``ast`` from the sources.

An arrow ``a -> b`` is any ``import`` statement in ``a`` (module level or inside a function) naming ``b``:
``from p import x`` is an arrow to ``p.x`` when that is a module, else to ``p``. The implicit import of a parent
package's ``__init__`` is not an arrow (every submodule import has it). Checked: no cycle, and the ROS-free layers
(core, geometry, perception, render, pipeline, train) import neither the ROS layer nor the deployment runtimes in
``engine/`` nor the tools. (``make_backend("tensorrt")`` finds ``engine.trt_backend`` by name at run time, which
is not an import of the pipeline.)
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nut_ros", "engine")
ROS_FREE = ("nut_ros.core", "nut_ros.geometry", "nut_ros.perception", "nut_ros.render", "nut_ros.pipeline",
            "nut_ros.train")
ABOVE_THE_CORE = ("nut_ros.ros", "nut_ros.tools", "engine", "rclpy", "bench")
#: cycles still in the code, with the layer that owns them (a new cycle fails; remove an entry once it is gone)
KNOWN_CYCLES: set[frozenset] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue  # outside the packages
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(frozenset(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_the_graph_sees_the_imports(graph):
    """The reader finds known arrows, function-level ones included (a parser that finds nothing passes nothing)."""
    assert "nut_ros.core.checkpoint" in graph["nut_ros.pipeline.backends"]
    assert "nut_ros.render._cuda" in graph["nut_ros.render.rasterizer"]  # imported inside a function
    assert {"nut_ros.core.model", "engine.plugins.raster_launcher"} <= graph["engine.trt_backend"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_no_import_cycle(graph):
    cycles = set(_cycles(graph))
    assert cycles <= KNOWN_CYCLES, [sorted(c) for c in cycles - KNOWN_CYCLES]


def test_ros_free_layers_import_nothing_above_them(graph):
    arrows = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith(ROS_FREE)
                    for b in targets if b.split(".")[0] in ("rclpy", "bench") or b.startswith(ABOVE_THE_CORE))
    assert not arrows, arrows


def test_the_packages_import_no_test_code(graph):
    arrows = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if b.split(".")[0] in ("test", "bench", "scenes", "timing", "variants", "conftest"))
    assert not arrows, arrows

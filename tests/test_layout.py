"""The package's shape: no import circles, and the small commands stay small."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "animegan_ignite"


def _imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file, in every form:
    ``from .x import y``, ``from . import x``, ``from animegan_ignite.x import y``,
    ``from animegan_ignite import x``, ``import animegan_ignite.x``)."""
    graph = {}
    for f in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "") if node.level == 0 else "animegan_ignite" + (
                    "." + node.module if node.module else "") if node.level == 1 else ""
                parts = module.split(".")
                if parts[0] != "animegan_ignite":
                    continue
                deps |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("animegan_ignite.")}
        graph[f.stem] = deps - {f.stem}
    return graph


def test_the_import_graph_sees_every_form_of_import():
    graph = _imports()
    assert {"faults", "resume", "seeds"} <= graph["handlers"]  # from . import faults, resume, seeds


def test_no_import_circles_in_the_package():
    graph, done, path = _imports(), set(), []

    def visit(module):
        assert module not in path, " -> ".join([*path[path.index(module):], module])
        if module in done:
            return
        path.append(module)
        for dep in graph.get(module, ()):
            visit(dep)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
    assert {"errors", "handlers", "images", "rundir", "resume"} <= set(graph)


def _reached(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    """Every package module ``start`` imports, directly or through others."""
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    return seen


def test_serve_and_generate_load_neither_the_trainer_nor_the_data_pipeline():
    loaded = _reached(_imports(), {"webapp", "faces", "checkpoints"})
    assert not loaded & {"trainer", "handlers", "data", "cache", "images", "quality", "config"}
    assert {"webapp", "faces", "checkpoints", "models"} <= loaded


COMMANDS = ("train", "evaluate", "generate", "serve", "plot", "export")


def test_each_command_module_is_light_and_each_library_module_is_not_a_command():
    """A command parses and checks its flags, then imports the library that does the work."""
    graph = _imports()
    light = {"config", "errors", "paths", "rundir"}
    for command in COMMANDS:
        top = {node.module.split(".")[0] for node in ast.parse(
            (PACKAGE / f"{command}.py").read_text()).body
            if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert top <= light, (command, top - light)
    for module in set(graph) - set(COMMANDS):
        assert "def main(" not in (PACKAGE / f"{module}.py").read_text(), module

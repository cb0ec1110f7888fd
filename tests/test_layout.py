"""The package's shape: parts in folders on floors, no import circles, light commands."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "animegan_ignite"

# The plan of the package (docs/development.md): the shared vocabulary at the top, then the
# parts in the order the data passes through them; each may import only what is on its floor
# or below, and the commands at the top import anything.
SHARED = ("errors", "seeds", "paths", "rundir", "device", "config")  # config/ is a folder
FOLDERS = ("data", "networks", "runs", "evaluation", "training", "use")
COMMANDS = ("train", "evaluate", "generate", "serve", "plot", "export")


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name below it (``runs.resume``; a folder's
    ``__init__.py`` by the folder's name, ``config``)."""
    found = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts:
            found[".".join(parts)] = f
    return found


def _resolve(base: list[str], names: list[str], modules: dict[str, Path]) -> set[str]:
    """What ``from {base} import {names}`` imports: the submodules it names, else ``base``."""
    found = {".".join([*base, n]) for n in names if ".".join([*base, n]) in modules}
    return found or {".".join(base) if ".".join(base) in modules else "?" + ".".join([*base, *names])}


def _imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file, in every form:
    ``from .x import y``, ``from . import x``, ``from ..part.x import y``,
    ``from animegan_ignite.part.x import y``, ``from animegan_ignite.part import x``,
    ``import animegan_ignite.part.x``)."""
    modules, graph = _modules(), {}
    for name, f in modules.items():
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                named = node.module.split(".") if node.module else []
                if node.level:
                    base = [*package[:len(package) - node.level + 1], *named]
                elif named[:1] == ["animegan_ignite"]:
                    base = named[1:]
                else:
                    continue
                deps |= _resolve(base, [a.name for a in node.names], modules)
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("animegan_ignite.")} & set(modules)
        graph[name] = deps - {name}
    return graph


def floor(module: str) -> int:
    part = module.split(".")[0]
    if part in SHARED:
        return 0
    if part in FOLDERS:
        return 1 + FOLDERS.index(part)
    assert module in COMMANDS, f"{module}: neither shared, a command nor in a part's folder"
    return 1 + len(FOLDERS)


def test_the_import_graph_sees_every_form_of_import():
    graph = _imports()
    assert {"runs.faults", "runs.resume", "seeds"} <= graph["training.handlers"]  # from ..runs import
    assert "data.sampler" in graph["runs.resume"]  # from ..data.sampler import EpochSampler
    assert "evaluation.quality" in graph["training.handlers"]
    assert "config.cli" in graph["config"]  # a folder's __init__: from .cli import ...


def test_every_import_of_the_package_names_a_module_that_exists():
    missing = {m: sorted(d for d in deps if d.startswith("?")) for m, deps in _imports().items()}
    assert not {m: d for m, d in missing.items() if d}


def test_the_package_is_its_parts_in_folders_and_each_imports_only_floors_below():
    graph = {m: {d for d in deps if not d.startswith("?")} for m, deps in _imports().items()}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(FOLDERS) | {"config"}
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
              if floor(d) > floor(m) or (floor(d) == floor(m) and floor(m) > 0
                                         and d.split(".")[0] != m.split(".")[0])]
    assert not upward, upward
    top = {m for m in graph if "." not in m} - set(FOLDERS)
    assert top == set(SHARED) | set(COMMANDS), top ^ (set(SHARED) | set(COMMANDS))


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
    assert {"errors", "training.handlers", "data.images", "rundir", "runs.resume"} <= set(graph)


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
    loaded = _reached(_imports(), {"use.webapp", "networks.faces", "runs.checkpoints"})
    assert not {m for m in loaded if m.split(".")[0] in ("training", "data", "config")}
    assert "evaluation.quality" not in loaded
    assert {"use.webapp", "networks.faces", "runs.checkpoints", "networks.models"} <= loaded


def test_each_command_module_is_light_and_each_library_module_is_not_a_command():
    """A command parses and checks its flags, then imports the library that does the work."""
    light = {"config", "errors", "paths", "rundir"}
    modules = _modules()
    for command in COMMANDS:
        top = {node.module.split(".")[0] for node in ast.parse(modules[command].read_text()).body
               if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert top <= light, (command, top - light)
    for module in set(modules) - set(COMMANDS):
        assert "def main(" not in modules[module].read_text(), module

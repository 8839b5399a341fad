"""Layers go one way (docs/contributing.md, "Layout"): each package of the
library imports only the packages `ALLOWED` names, the core nothing else of
ours; nothing sits loose at the library's top; the library (`protein_location`)
never imports the data creation stage (`data_prep`), which is built on top of
it; nothing imports in a circle.

Read from the source, function-local imports included: what the code can
import, not only what one run happened to.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("protein_location", "data_prep", "bench")
# What no inference, training or export code may pull in.
DATA_CREATION_ONLY = ("cv2",)
# The library's stage packages and the ones each may import (its own aside); the
# picture in docs/contributing.md, "Layout". `__main__` (the commands) may import any.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "models": {"core"},
    "evaluation": {"core"},
    "export": {"core", "data", "models", "evaluation"},
    "inference": {"core", "data", "export", "evaluation"},
    "training": {"core", "data", "models", "evaluation", "export"},
    "cells": {"core", "export", "inference"},
}
# What the creation stage may use of the library: the core, and the cells' own
# segmentation and crops (`data_prep crops` cuts cells as `cells --crop-model` does).
DATA_PREP_MAY_IMPORT = {"core", "cells"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imports(path, known):
    """The modules a file imports: ours resolved to the module (`from a import
    b` is a.b when a.b is a module), others by their top-level name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name if alias.name in known else alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module if node.module in known else node.module.split(".")[0])
    return found


def import_graph():
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def library_package(module):
    """`protein_location.training.task` -> "training"; None outside the library's packages."""
    parts = module.split(".")
    return parts[1] if parts[0] == "protein_location" and len(parts) > 1 else None


def test_nothing_is_loose_at_the_top_of_the_library():
    loose = sorted(path.name for path in (ROOT / "protein_location").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]
    packages = sorted(path.parent.name for path in (ROOT / "protein_location").glob("*/__init__.py"))
    assert packages == sorted(ALLOWED)


def test_each_package_imports_only_the_packages_below_it():
    graph = import_graph()
    offenders = {}
    for name, imported in graph.items():
        package = library_package(name)
        if package is None or package == "__main__":
            continue
        ours = {i for i in imported if i.split(".")[0] in PACKAGES}
        found = sorted(i for i in ours if library_package(i) not in ALLOWED[package] | {package})
        if found:
            offenders[name] = found
    assert offenders == {}


def test_the_core_imports_nothing_else_of_ours():
    graph = import_graph()
    offenders = {
        name: sorted(i for i in imported if i.split(".")[0] in PACKAGES and not i.startswith("protein_location.core"))
        for name, imported in graph.items()
        if name.startswith("protein_location.core")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_data_creation_uses_only_the_core_and_the_cells_of_the_library():
    graph = import_graph()
    offenders = {
        name: sorted(
            i for i in imported if i.startswith("protein_location") and library_package(i) not in DATA_PREP_MAY_IMPORT
        )
        for name, imported in graph.items()
        if name.startswith("data_prep")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_library_never_imports_data_prep_or_opencv():
    graph = import_graph()
    offenders = {
        name: sorted(i for i in imported if i.split(".")[0] in ("data_prep", "bench") + DATA_CREATION_ONLY)
        for name, imported in graph.items()
        if name.startswith("protein_location")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_nothing_of_ours_imports_pillow_so_its_bomb_guard_stays_as_pillow_sets_it():
    """Raw files are decoded by TensorFlow (core.stains); Pillow, which
    matplotlib brings, is never imported, and so never reconfigured, by us."""
    offenders = sorted(name for name, imported in import_graph().items() if "PIL" in imported)
    assert offenders == []


def test_nothing_imports_in_a_circle():
    # A script importing itself under `__main__` (so spawned workers find its functions) is no circle.
    graph = {name: {i for i in imported if i in modules() and i != name} for name, imported in import_graph().items()}
    cycles = []

    def visit(name, path):
        for target in sorted(graph[name]):
            if target in path:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(name)

    done = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_nothing_imports_the_entry_points_above_the_stages():
    """`protein_location_command` (the front door) and `train_keras.py` sit on
    top of both stages; a stage importing them would go up."""
    offenders = sorted(
        name for name, imported in import_graph().items() if imported & {"protein_location_command", "train_keras"}
    )
    assert offenders == []

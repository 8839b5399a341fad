"""Layers go one way: the library (`protein_location`) never imports the data
creation stage (`data_prep`), which is built on top of it."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imported_packages(path):
    """Top-level package of every import in a file, function-local ones included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


def test_the_library_never_imports_data_prep():
    offenders = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "protein_location").rglob("*.py")
                       if "data_prep" in set(_imported_packages(path)))
    assert offenders == []

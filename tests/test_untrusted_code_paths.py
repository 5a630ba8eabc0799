"""Input data is untrusted: nothing in the library or flows evaluates it or unpickles it."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.paths import REPO_ROOT

PACKAGES = ("pipeline", "flows", "schemas")
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRIBUTES = {("pickle", "load"), ("pickle", "loads"), ("marshal", "loads"), ("dill", "loads"), ("yaml", "load"), ("yaml", "unsafe_load")}


def python_files():
    for package in PACKAGES:
        yield from sorted((REPO_ROOT / package).rglob("*.py"))


def violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id in FORBIDDEN_CALLS:
                found.append(f"{path}:{node.lineno} calls {function.id}()")
            if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
                if (function.value.id, function.attr) in FORBIDDEN_ATTRIBUTES:
                    found.append(f"{path}:{node.lineno} calls {function.value.id}.{function.attr}()")
            for keyword in node.keywords:
                if keyword.arg == "trust_remote_code" and isinstance(keyword.value, ast.Constant) and keyword.value.value:
                    found.append(f"{path}:{node.lineno} hard-codes trust_remote_code=True")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split(".")[0] in ("pickle", "marshal", "dill", "shelve") for n in names):
                found.append(f"{path}:{node.lineno} imports a pickle-like module")
    return found


def test_no_eval_or_unpickling_of_input_anywhere():
    files = list(python_files())
    assert len(files) > 10
    assert [v for path in files for v in violations(path)] == []


def test_the_scan_catches_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nx = eval('1')\npickle.loads(b'')\nf(trust_remote_code=True)\n")
    assert len(violations(bad)) == 4

"""The house rule as a checked contract: imports point only down the layers of pyproject.toml's
``[tool.importlinter]`` (lazy imports included), and ``db`` and ``models`` never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"  # import-linter's console script, in this venv
    run = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout


def test_no_module_outside_tests_and_migrations_is_over_300_lines_or_has_a_function_over_60():
    too_long = []
    for path in sorted(ROOT.glob("[a-z]*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".venv") or "migrations" in rel.parts:
            continue
        source = path.read_text()
        if (n := len(source.splitlines())) > 300:
            too_long.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{rel}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []

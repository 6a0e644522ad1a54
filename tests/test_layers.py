"""A capability uses another capability's public names only: ``modelscale.profile``, never
``modelscale.profile.sweep``. import-linter (pyproject.toml) checks which packages may import which;
it cannot tell a package's public names from its internals, so this test reads every import."""

from __future__ import annotations

import ast
import pathlib

import modelscale

CAPABILITIES = ("compress", "examples", "laws", "loadgen", "plan", "profile", "serve")
"""Capability packages; the workflows above them are held to the same rule."""

ROOT = pathlib.Path(modelscale.__file__).parent


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every absolute import, inside functions and TYPE_CHECKING too."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def sibling_internals(package: str) -> list[str]:
    """'path:line imports modelscale.x.y' for each import of another capability's submodule."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            parts = module.split(".")
            if (
                len(parts) > 2
                and parts[0] == "modelscale"
                and parts[1] in CAPABILITIES
                and parts[1] != package
            ):
                found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module}")
    return found


def test_capabilities_and_workflows_use_only_public_names_of_other_capabilities() -> None:
    found = [hit for package in (*CAPABILITIES, "workflow") for hit in sibling_internals(package)]
    assert not found, "imports of another capability's internals:\n" + "\n".join(found)


def test_the_check_finds_such_an_import() -> None:
    tree = ast.parse("def f():\n    from modelscale.profile.sweep import MeasureOptions\n")
    assert imported_modules(tree) == [(2, "modelscale.profile.sweep")]

"""The library (`meshid/`) sits below the tasks, the flows and the command line, and never imports Prefect: no module
under `meshid/` imports `tasks`, `flows`, `cli` or `prefect`, at its top or inside a function."""

import ast
from pathlib import Path

import meshid

FORBIDDEN = {"tasks", "flows", "cli", "prefect"}
LIBRARY = Path(meshid.__file__).parent


def imports_of(source: str, packages: set[str]) -> list[str]:
    """The absolute imports in `source` whose top-level package is one of `packages` (relative imports stay inside
    their own package)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names if name.partition(".")[0] in packages]
    return found


def test_the_check_sees_imports_at_the_top_and_inside_functions() -> None:
    source = ("import prefect.states\nfrom meshid import kube\nimport flowsy\n"
              "def f():\n    from flows.guide import guide\n    import cli.main\n    from . import tasks\n")
    assert imports_of(source, FORBIDDEN) == ["line 1: prefect.states", "line 5: flows.guide", "line 6: cli.main"]


def test_no_library_module_imports_an_upper_layer_or_prefect() -> None:
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 20  # the walk found the library
    offenders = {str(path.relative_to(LIBRARY.parent)): found for path in modules
                 if (found := imports_of(path.read_text(), FORBIDDEN))}
    assert offenders == {}

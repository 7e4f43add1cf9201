"""The sandbox boundary: meshid drives the sandbox from one module, the sandbox provider (`meshid/providers/sandbox.py`),
as the minikube provider drives minikube, and the world never calls meshid. No other module of `meshid/`, `tasks/`,
`flows/` or `cli/` imports `sandbox` (at its top or inside a function); nothing under `sandbox/` imports `meshid`,
`cli`, `flows` or `tasks`, or runs the `meshid` command."""

import ast
import re
from pathlib import Path

import meshid
from tests.unit.test_library_imports_no_upper_layer import imports_of

ROOT = Path(meshid.__file__).parent.parent
DRIVER = ROOT / "meshid" / "providers" / "sandbox.py"
ABOVE = {"meshid", "cli", "flows", "tasks"}

# the meshid command in shell code: the word meshid, its path in a venv, or a variable holding it; `python -m cli`
SHELL_MESHID = re.compile(r"(?:(?<![\w./-])|(?<=/bin/))\$?\{?meshid(?![\w./-])|-m\s+cli\b")


def shell_calls(source: str) -> list[str]:
    """Lines of shell code that run the `meshid` command (comments left out)."""
    return [f"line {n}: {line.strip()}" for n, line in enumerate(source.splitlines(), 1)
            if SHELL_MESHID.search(re.sub(r"(^|\s)#.*", "", line))]


def python_calls(source: str) -> list[str]:
    """Argument lists in Python code that run the `meshid` command: `["meshid", ...]`, a path ending in `/meshid`
    first, or `-m cli`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.List, ast.Tuple)):
            continue
        words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]
        if (words and words[0] and Path(words[0]).name == "meshid") or ("-m", "cli") in zip(words, words[1:]):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checks_see_the_meshid_command_and_nothing_else() -> None:
    shell = ('"$meshid" sandbox down --name x\nKUBECONFIG=$(meshid sandbox up --name x)\n/w/.venv/bin/meshid run\n'
             "python -m cli sandbox status\n# meshid sandbox up, in a comment\ngo mod init meshid.local/sandbox/x\n"
             'cache=~/.cache/meshid/bin\necho "$MESHID_HOME"\n')
    assert [line.split(":")[0] for line in shell_calls(shell)] == ["line 1", "line 2", "line 3", "line 4"]
    assert shell_calls((ROOT / "bench" / "guide.sh").read_text()), "the guide's commands run meshid: the check sees it"
    python = ('subprocess.run(["meshid", "sandbox", "up"])\nrun([sys.executable, "-m", "cli", "run"])\n'
              'run(("/v/bin/meshid", "x"))\nhome = Path.home() / ".cache" / "meshid"\n'
              'raise E(f"start one with `meshid sandbox up --name {name}`")\n')
    assert [line.split(":")[0] for line in python_calls(python)] == ["line 1", "line 2", "line 3"]


def test_only_the_sandbox_provider_imports_the_sandbox() -> None:
    modules = sorted(path for layer in ABOVE for path in (ROOT / layer).rglob("*.py"))
    assert DRIVER in modules and len(modules) > 40  # the walk found the layers and the one module allowed
    offenders = {str(path.relative_to(ROOT)): found for path in modules
                 if path != DRIVER and (found := imports_of(path.read_text(), {"sandbox"}))}
    assert offenders == {}


def test_the_sandbox_never_calls_meshid() -> None:
    world = ROOT / "sandbox"
    offenders = {str(path.relative_to(ROOT)): found for path in sorted(world.rglob("*.py"))
                 if (found := imports_of(path.read_text(), ABOVE) + python_calls(path.read_text()))}
    offenders |= {str(path.relative_to(ROOT)): found for path in sorted(world.rglob("*.sh"))
                  if (found := shell_calls(path.read_text()))}
    assert list(world.rglob("*.sh"))  # the walk found the world's shell code
    assert offenders == {}

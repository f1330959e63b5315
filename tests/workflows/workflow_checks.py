"""Reading the GitHub Actions workflows and the Makefile the way the tests in this folder check them.

A workflow's ``run:`` scripts are split into simple shell commands (``;``, ``&&``, ``||``, ``|``, new lines), with
``${{ matrix.* }}`` expanded to each value of the job's matrix and any other ``${{ ... }}`` expression left as an
opaque word. Every command must then be something this repository provides (a make target, a console script of
``pyproject.toml``, a flow or module run with the virtualenv's Python, a file) or a tool the GitHub-hosted runner
ships; ``check_command`` says what is wrong otherwise.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOW_DIR = REPO_ROOT / ".github" / "workflows"
VENV_BIN = ".venv/bin/"

WORKFLOWS_ARGO_CREATE = ("--production", "argo-workflows", "create")
"""How cd.yml deploys each flow to Argo Workflows; the compile check runs the same with ``--only-json``."""
RUNNER_TOOLS = frozenset({"aws", "curl", "date", "docker", "echo", "exit", "mkdir", "printf", "sleep"})
"""Commands the GitHub-hosted Ubuntu runner provides; anything else a workflow runs must come from this repository."""
LOOP_KEYWORDS = frozenset({"for", "while", "until"})
BLOCK_KEYWORDS = frozenset({"do", "done", "then", "else", "fi"})
SEPARATORS = frozenset({";", "&&", "||", "|", "&"})
REDIRECTIONS = frozenset({">", ">>", "<", "2>", "2>>"})
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass(frozen=True)
class RunStep:
    """One ``run:`` script of one job, with the matrix values it was expanded for."""

    workflow: str
    job: str
    name: str
    script: str

    @property
    def where(self) -> str:
        return f"{self.workflow}: job {self.job}, step {self.name!r}"


def load_workflow(path: Path) -> dict[str, Any]:
    """A workflow file as data; YAML 1.1 reads the key ``on`` as True, which is put back under ``on``."""
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def workflows() -> dict[str, dict[str, Any]]:
    """Every workflow of the repository by file name."""
    return {path.name: load_workflow(path) for path in sorted(WORKFLOW_DIR.glob("*.yml"))}


def run_steps(name: str, workflow: dict[str, Any]) -> Iterator[RunStep]:
    """Every ``run:`` script of the workflow, once per combination of its job's matrix values."""
    for job_id, job in workflow.get("jobs", {}).items():
        matrix = {
            key: values
            for key, values in (job.get("strategy", {}).get("matrix") or {}).items()
            if isinstance(values, list)
        }
        combinations = [dict(zip(matrix, values, strict=True)) for values in product(*matrix.values())] or [{}]
        for index, step in enumerate(job.get("steps", [])):
            if "run" not in step:
                continue
            for values in combinations:
                script = EXPRESSION.sub(lambda match, values=values: _expression(match.group(1), values), step["run"])
                step_name = EXPRESSION.sub(
                    lambda match, values=values: _expression(match.group(1), values), step.get("name", f"#{index}")
                )
                yield RunStep(name, job_id, step_name, script)


def _expression(expression: str, matrix: dict[str, Any]) -> str:
    if expression.startswith("matrix.") and expression.removeprefix("matrix.") in matrix:
        return str(matrix[expression.removeprefix("matrix.")])
    return "GITHUB_EXPRESSION"


def simple_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, each as its words (quotes removed), loops' headers included."""
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        current: list[str] = []
        skip_next = False
        for token in lexer:
            if skip_next:
                skip_next = False
            elif token in SEPARATORS:
                commands.append(current)
                current = []
            elif token in REDIRECTIONS:
                skip_next = True  # the file redirected to or from
            else:
                current.append(token)
        commands.append(current)
    return [command for command in (_without_keywords(words) for words in commands) if command]


def _without_keywords(words: list[str]) -> list[str]:
    while words and (words[0] in BLOCK_KEYWORDS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]  # `do`, `then` ... and `VAR=value` prefixes
    return words


@cache
def _make_database() -> str:
    """make's database of the Makefile (``make -p``), read without running anything."""
    return subprocess.run(
        ["make", "--no-print-directory", "-pRrq", "-f", "Makefile", ":"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def make_targets() -> frozenset[str]:
    """Every target of the Makefile, from make's own database (so included and generated rules count)."""
    return frozenset(
        match.group(1)
        for match in re.finditer(r"^([A-Za-z0-9_./-]+):(?!=)", _make_database(), flags=re.MULTILINE)
        if not match.group(1).startswith(".")
    )


def make_prerequisites(target: str) -> list[str]:
    """The prerequisites of a Makefile target, in order, as make expands them."""
    match = re.search(rf"^{re.escape(target)}:(?!=)(.*)$", _make_database(), flags=re.MULTILINE)
    if match is None:
        raise LookupError(f"no target {target} in the Makefile")
    return match.group(1).split()


def pytest_arguments(target: str) -> list[str] | None:
    """The arguments ``make <target>`` passes to pytest (from ``make -n``), or None if it runs no pytest."""
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for line in dry_run.splitlines():
        if " -m pytest" not in line:  # other recipes' lines (a shell script continued with backslashes) are skipped
            continue
        words = shlex.split(line)
        if words[1:3] == ["-m", "pytest"]:
            return words[3:]
    return None


@cache
def console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: name -> ``module:function``."""
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def module_exists(module: str) -> bool:
    """Whether ``module`` is a module or package in this repository."""
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def check_script(script: str) -> list[str]:
    """What is wrong with the commands of one ``run:`` script (empty when every one exists)."""
    problems: list[str] = []
    loops: dict[str, list[str]] = {}
    for command in simple_commands(script):
        if command[0] in LOOP_KEYWORDS:
            if command[0] == "for" and len(command) >= 3 and command[2] == "in":
                loops[command[1]] = command[3:]
            continue
        problems.extend(check_command(command, loops))
    return problems


def check_command(command: list[str], loops: dict[str, list[str]] | None = None) -> list[str]:
    """What is wrong with one simple command: ``[]`` when the repository or the runner provides it."""
    head, arguments = command[0], command[1:]
    if head == "make":
        missing = [word for word in arguments if not word.startswith("-") and "=" not in word]
        return [f"`make {word}`: no such Makefile target" for word in missing if word not in make_targets()]
    if head.startswith(VENV_BIN):
        return _check_venv_command(head.removeprefix(VENV_BIN), arguments, loops or {})
    if head in RUNNER_TOOLS:
        return []
    if "/" in head and (REPO_ROOT / head).is_file():
        return []
    return [f"`{head}` is neither in this repository nor a tool of the runner ({', '.join(sorted(RUNNER_TOOLS))})"]


def _check_venv_command(name: str, arguments: list[str], loops: dict[str, list[str]]) -> list[str]:
    if name == "python":
        if arguments[:1] == ["-m"]:
            module = arguments[1]
            return [] if module_exists(module) else [f"`python -m {module}`: no such module in the repository"]
        if not arguments:
            return ["`python` without a script or module"]
        return _check_script_path(arguments[0], loops)
    if name not in console_scripts():
        return [f"`{VENV_BIN}{name}`: not a console script of pyproject.toml"]
    module = console_scripts()[name].partition(":")[0]
    return [] if module_exists(module) else [f"`{name}` runs {module}, which does not exist in the repository"]


def _check_script_path(path: str, loops: dict[str, list[str]]) -> list[str]:
    variable = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", path)
    if variable and variable.group(1) in loops:
        paths = [match for pattern in loops[variable.group(1)] for match in REPO_ROOT.glob(pattern)]
        return [] if paths else [f"`python {path}`: the loop over {loops[variable.group(1)]} matches no file"]
    return [] if (REPO_ROOT / path).is_file() else [f"`python {path}`: no such file in the repository"]


def flow_files() -> list[Path]:
    """Every flow: each ``flows/*.py`` (the symlinked library folders are not files)."""
    return sorted(path for path in (REPO_ROOT / "flows").glob("*.py") if path.is_file())

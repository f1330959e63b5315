"""Every workflow passes actionlint (its WebAssembly build, run with the virtualenv's Node.js, offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workflow_checks import REPO_ROOT, WORKFLOW_DIR

NODE = Path(sys.executable).with_name("node")
LINTER = Path(__file__).with_name("actionlint.cjs")


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert (REPO_ROOT / "node_modules" / "@tktco" / "node-actionlint").is_dir(), "install it first: make tools"
    command = [str(NODE), str(LINTER), *map(str, paths)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_every_workflow_passes_actionlint() -> None:
    workflows = sorted(WORKFLOW_DIR.glob("*.yml"))
    assert {path.name for path in workflows} >= {"ci.yml", "cd.yml", "schedule.yml"}

    result = _actionlint(*workflows)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"actionlint: {len(workflows)} files, 0 findings")


def test_actionlint_reports_what_is_wrong_with_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - uses: actions/checkout@v4\n"
        "        with:\n"
        "          no-such-input: 1\n"
        "  deploy:\n"
        "    needs: no-such-job\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo deploy\n"
    )

    result = _actionlint(broken)

    assert result.returncode == 1
    assert 'property "no_such_property" is not defined' in result.stdout
    assert 'input "no-such-input" is not defined in action "actions/checkout@v4"' in result.stdout
    assert 'job "deploy" needs job "no-such-job" which does not exist' in result.stdout

"""A model trained on a pod knows its commit: the code package Metaflow uploads for remote tasks carries the commit
of the checkout it was made from, and ``current_code_version`` finds it there, where no ``.git`` exists."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from metaflow.packaging_sys import MetaflowCodeContent

from stockcast.core.registry import current_code_version
from workflow_checks import REPO_ROOT

PRINT_CODE_VERSION = "from stockcast.core.registry import current_code_version; print(current_code_version())"


def test_the_code_version_travels_in_the_code_package(tmp_path: Path) -> None:
    commit = current_code_version()
    assert commit is not None, "the tests run from a git checkout"
    archive = tmp_path / "package.tgz"
    subprocess.run(
        [sys.executable, "flows/train.py", "package", "save", str(archive)],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    pod = tmp_path / "pod"  # outside any git repository, as a pod's working directory is
    with tarfile.open(archive) as package:
        package.extractall(pod, filter="data")
    assert not (pod / ".git").exists()

    # As Metaflow's bootstrap runs a task on a pod: in the unpacked package, with the packaged Metaflow first.
    result = subprocess.run(
        [sys.executable, "-c", PRINT_CODE_VERSION],
        cwd=pod,
        env={**os.environ, **MetaflowCodeContent.get_env_vars_for_packaged_metaflow(str(pod))},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    # The commit itself; whether it is "+dirty" Metaflow decides with its own git command (diff-index).
    assert result.stdout.strip().split("+")[0] == commit.split("+")[0]

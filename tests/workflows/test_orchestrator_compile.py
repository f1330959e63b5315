"""Every flow compiles for the production orchestrator: ``argo-workflows create --only-json`` on the production
branch, offline, with the S3 datastore served by the test server (the code package is uploaded there). cd.yml
deploys exactly these flows with exactly this command, without ``--only-json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_checks import REPO_ROOT, WORKFLOWS_ARGO_CREATE, flow_files, run_steps, simple_commands, workflows

pytestmark = pytest.mark.s3

ARGO_EVENTS = {
    "METAFLOW_ARGO_EVENTS_EVENT": "metaflow-event",
    "METAFLOW_ARGO_EVENTS_EVENT_SOURCE": "argo-events-webhook",
    "METAFLOW_ARGO_EVENTS_SERVICE_ACCOUNT": "operate-workflow-sa",
    "METAFLOW_ARGO_EVENTS_WEBHOOK_URL": "http://argo-events-webhook-eventsource-svc.argo-events:12000/metaflow-event",
}
"""The Argo Events settings flows with triggers need (the names Metaflow's Argo Events set-up uses); in production
they come with the rest of the Metaflow configuration (METAFLOW_CONFIG_JSON)."""


def test_cd_deploys_every_flow_with_the_command_compiled_here() -> None:
    commands = [
        command
        for step in run_steps("cd.yml", workflows()["cd.yml"])
        for command in simple_commands(step.script)
        if "argo-workflows" in command
    ]
    assert commands == [[".venv/bin/python", "$flow", *WORKFLOWS_ARGO_CREATE]]
    loops = [
        command
        for step in run_steps("cd.yml", workflows()["cd.yml"])
        for command in simple_commands(step.script)
        if command[:3] == ["for", "flow", "in"]
    ]
    assert loops == [["for", "flow", "in", "flows/*.py"]]
    assert sorted(REPO_ROOT.glob("flows/*.py")) == flow_files()


@pytest.mark.parametrize("flow_file", flow_files(), ids=lambda path: path.stem)
def test_the_flow_compiles_for_argo_workflows_on_the_production_branch(flow_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "metaflow-home"  # no configuration file: only the environment counts
    result = subprocess.run(
        [sys.executable, str(flow_file), *WORKFLOWS_ARGO_CREATE, "--only-json"],
        cwd=REPO_ROOT,
        env={**os.environ, **ARGO_EVENTS, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    template = json.loads(result.stdout)

    assert template["kind"] == "WorkflowTemplate"
    annotations = template["metadata"]["annotations"]
    assert annotations["metaflow/project_name"] == "stockcast"
    assert annotations["metaflow/branch_name"] == "prod"
    assert template["metadata"]["name"] == f"stockcast.prod.{annotations['metaflow/flow_name'].lower()}"
    assert {"start", "end"} <= {step["name"] for step in template["spec"]["templates"]}

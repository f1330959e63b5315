"""Every flow compiles for the production orchestrator: ``argo-workflows create --only-json`` on the production
branch, offline, with the S3 datastore served by the test server (the code package is uploaded there). cd.yml
deploys exactly these flows with exactly this command, without ``--only-json``.

Each flow is compiled twice: with the shipped configuration, as cd.yml deploys it, and with a remote engines
configuration (Kubernetes, distinct resources per step) plus a training configuration with a GPU candidate. The
checks read the compiled WorkflowTemplates: the resources of every step's container, the triggers and the schedule
Metaflow annotates them with (the Argo Events sensors and the cron workflow are made from the same values), never
our configuration files; and the code package a template runs, unpacked as on a pod, knows its commit.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from metaflow.packaging_sys import MetaflowCodeContent

from stockcast.core.events import DATA_EVENT, RETRAIN_EVENT
from stockcast.core.registry import current_code_version
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

REMOTE_ENGINES = """
engine = "kubernetes"

[resources]
cpu = 2
memory = 5000

[flows.IngestFlow.steps.validate]
cpu = 3
memory = 6000

[flows.TrainFlow]
gpu_steps = ["backtest", "refit"]

[flows.TrainFlow.resources]
memory = 7000

[flows.TrainFlow.steps.features]
cpu = 4
memory = 9000

[flows.TrainFlow.steps.join_features]
cpu = 3
memory = 10000

[flows.TrainFlow.steps.backtest]
cpu = 5

[flows.BatchPredictFlow.steps.predict]
cpu = 6
memory = 11000

[flows.MonitorFlow.steps.measure]
cpu = 7
memory = 12000
"""
# Sizes above Kubernetes' defaults (1 cpu, 4096 MB), which @kubernetes keeps where @resources asks for less.
DEFAULT_STEP = (2, 5000, 0)
FLOW_DEFAULT_STEP = {"TrainFlow": (2, 7000, 0)}
REMOTE_STEPS = {
    "IngestFlow": {"validate": (3, 6000, 0)},
    "TrainFlow": {
        "features": (4, 9000, 0),
        "join_features": (3, 10000, 0),
        "backtest": (5, 7000, 1),
        "refit": (2, 7000, 1),
    },
    "BatchPredictFlow": {"predict": (6, 11000, 0)},
    "MonitorFlow": {"measure": (7, 12000, 0)},
}
"""(cpu, memory in MB, GPUs) each step's container must request under REMOTE_ENGINES; the other steps request
their flow's default."""
MISNAMED_STEP = "[flows.IngestFlow.steps.validat]\ncpu = 2\n"
PRINT_CODE_VERSION = "from stockcast.core.registry import current_code_version; print(current_code_version())"


def compile_flow(flow_file: Path, home: Path, options: list[str]) -> subprocess.CompletedProcess[str]:
    """``python flows/x.py [options] --production argo-workflows create --only-json``, as cd.yml runs it."""
    return subprocess.run(
        [sys.executable, str(flow_file), *options, *WORKFLOWS_ARGO_CREATE, "--only-json"],
        cwd=REPO_ROOT,
        # No configuration file in the Metaflow home: only the environment counts.
        env={**os.environ, **ARGO_EVENTS, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def compiled(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Every flow compiled with the shipped configuration ("shipped") and the remote one ("remote"), and IngestFlow
    with an engines file naming a step it lacks ("misnamed"), two at a time (each compile is a Python process of its
    own); the WorkflowTemplate as data, or the failed process."""
    folder = tmp_path_factory.mktemp("argo-configs")
    (folder / "engines.toml").write_text(REMOTE_ENGINES, encoding="utf-8")
    (folder / "misnamed.toml").write_text(MISNAMED_STEP, encoding="utf-8")
    train = (REPO_ROOT / "configs" / "train.toml").read_text(encoding="utf-8")
    gpu_train = train.replace("thread_count = 2 }", 'thread_count = 2, task_type = "GPU" }')
    assert gpu_train != train, "the shipped training configuration no longer has the CatBoost line this edits"
    (folder / "train.toml").write_text(gpu_train, encoding="utf-8")
    remote_engines = ["--config", "engines", str(folder / "engines.toml")]
    gpu_training = ["--config", "config", str(folder / "train.toml")]
    options = {(flow_file.stem, "shipped"): [] for flow_file in flow_files()} | {
        (flow_file.stem, "remote"): remote_engines + (gpu_training if flow_file.stem == "train" else [])
        for flow_file in flow_files()
    }
    options["ingest", "misnamed"] = ["--config", "engines", str(folder / "misnamed.toml")]
    jobs = {
        (flow, variant): (REPO_ROOT / "flows" / f"{flow}.py", tmp_path_factory.mktemp("metaflow-home"), words)
        for (flow, variant), words in options.items()
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda job: compile_flow(*job), jobs.values()), strict=True))
    return {key: json.loads(result.stdout) if result.returncode == 0 else result for key, result in results.items()}


def workflow_template(compiled: dict[tuple[str, str], Any], flow: str, variant: str) -> dict[str, Any]:
    template = compiled[(flow, variant)]
    assert isinstance(template, dict), template.stdout + template.stderr
    return template


def step_requests(template: dict[str, Any]) -> dict[str, tuple[float, float, int]]:
    """(cpu, memory in MB, GPUs) of every step's container, by step name (Argo writes ``_`` as ``-``)."""
    structure = json.loads(template["metadata"]["annotations"]["metaflow/dag"])["graph_structure"]
    steps = set(_flatten(structure))
    found = {}
    for entry in template["spec"]["templates"]:
        name = entry["name"].replace("-", "_")
        if name in steps:
            resources = entry["container"]["resources"]
            found[name] = (
                float(resources["requests"]["cpu"]),
                float(resources["requests"]["memory"].removesuffix("M")),
                int((resources["limits"] or {}).get("nvidia.com/gpu", 0)),
            )
    assert set(found) == steps, "every step has a container template"
    return found


def container_environment(template: dict[str, Any], step: str) -> dict[str, str | None]:
    """The environment variables of a step's container (those set from a value; others map to ``None``)."""
    entry = next(entry for entry in template["spec"]["templates"] if entry["name"] == step)
    return {variable["name"]: variable.get("value") for variable in entry["container"]["env"]}


def _flatten(structure: Any) -> list[str]:
    return [structure] if isinstance(structure, str) else [name for part in structure for name in _flatten(part)]


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
def test_the_flow_compiles_for_argo_workflows_on_the_production_branch(
    flow_file: Path, compiled: dict[tuple[str, str], Any]
) -> None:
    template = workflow_template(compiled, flow_file.stem, "shipped")

    assert template["kind"] == "WorkflowTemplate"
    annotations = template["metadata"]["annotations"]
    assert annotations["metaflow/project_name"] == "stockcast"
    assert annotations["metaflow/branch_name"] == "prod"
    assert template["metadata"]["name"] == f"stockcast.prod.{annotations['metaflow/flow_name'].lower()}"
    assert {"start", "end"} <= {step["name"] for step in template["spec"]["templates"]}
    # The shipped training configuration has no GPU candidate: no step of any flow asks for a GPU.
    assert {gpus for _cpu, _memory, gpus in step_requests(template).values()} == {0}


@pytest.mark.parametrize("flow_file", flow_files(), ids=lambda path: path.stem)
def test_every_step_requests_the_resources_the_engines_configuration_gives_it(
    flow_file: Path, compiled: dict[tuple[str, str], Any]
) -> None:
    template = workflow_template(compiled, flow_file.stem, "remote")
    flow = template["metadata"]["annotations"]["metaflow/flow_name"]

    requests = step_requests(template)

    default = FLOW_DEFAULT_STEP.get(flow, DEFAULT_STEP)
    assert requests == {step: REMOTE_STEPS[flow].get(step, default) for step in requests}
    assert set(REMOTE_STEPS[flow]) <= set(requests), "a configured step is missing from the compiled workflow"


def test_the_deployed_flows_start_each_other_in_a_chain_and_on_a_schedule(
    compiled: dict[tuple[str, str], Any],
) -> None:
    annotations = {
        template["metadata"]["annotations"]["metaflow/flow_name"]: template["metadata"]["annotations"]
        for template in (workflow_template(compiled, flow_file.stem, "shipped") for flow_file in flow_files())
    }
    triggers = {flow: json.loads(values.get("metaflow/triggers", "[]")) for flow, values in annotations.items()}
    schedules = {
        flow: json.loads(values["metaflow/cron"]) for flow, values in annotations.items() if "metaflow/cron" in values
    }

    assert triggers == {
        # The data producer's event starts ingestion; each new snapshot, batch prediction; each prediction,
        # monitoring; and the retrain event MonitorFlow publishes (namespaced_event_name on branch prod), training.
        "IngestFlow": [{"name": f"mfns.stockcast.prod.{DATA_EVENT}", "type": "event"}],
        "BatchPredictFlow": [{"name": "metaflow.stockcast.prod.IngestFlow.end", "type": "run"}],
        "MonitorFlow": [{"name": "metaflow.stockcast.prod.BatchPredictFlow.end", "type": "run"}],
        "TrainFlow": [{"name": f"mfns.stockcast.prod.{RETRAIN_EVENT}", "type": "event"}],
    }
    assert schedules == {"MonitorFlow": {"schedule": "0 23 * * 1-5", "tz": "Etc/UTC"}}
    # MonitorFlow publishes the retrain event from its `assess` step, through the Argo Events webhook.
    environment = container_environment(workflow_template(compiled, "monitor", "shipped"), "assess")
    assert environment["METAFLOW_ARGO_EVENTS_WEBHOOK_URL"] == ARGO_EVENTS["METAFLOW_ARGO_EVENTS_WEBHOOK_URL"]


def test_an_engines_configuration_naming_a_step_the_flow_lacks_stops_the_compile(
    compiled: dict[tuple[str, str], Any],
) -> None:
    result = compiled["ingest", "misnamed"]

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode != 0
    assert "flows.IngestFlow.steps.validat: IngestFlow has no step 'validat'" in result.stdout + result.stderr


def test_the_code_package_of_a_deployed_flow_knows_its_commit_on_a_pod(
    compiled: dict[tuple[str, str], Any], s3_server: str, tmp_path: Path
) -> None:
    commit = current_code_version()
    assert commit is not None, "the tests run from a git checkout"
    template = workflow_template(compiled, "train", "remote")
    bucket, key = container_environment(template, "start")["METAFLOW_CODE_URL"].removeprefix("s3://").split("/", 1)
    archive = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=bucket, Key=key)["Body"].read()
    pod = tmp_path / "pod"  # outside any git repository, as a pod's working directory is
    with tarfile.open(fileobj=io.BytesIO(archive)) as package:
        # The package this test's compile just built (no `filter=`: Python 3.11 before 3.11.4 lacks it).
        package.extractall(pod)

    # As Metaflow's bootstrap runs a task there: in the unpacked package, with the packaged Metaflow first.
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

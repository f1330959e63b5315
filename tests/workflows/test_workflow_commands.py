"""What the workflows run exists here, the pull-request checks are exactly ``make test``'s tiers, and the
workflows follow the security rules: least-privilege permissions, actions pinned to commit SHAs, AWS through OIDC,
no secrets in pull-request runs, production jobs serialised and behind the ``production`` environment."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from workflow_checks import (
    REPO_ROOT,
    WORKFLOW_DIR,
    check_script,
    make_prerequisites,
    run_steps,
    simple_commands,
    workflows,
)

WORKFLOWS = workflows()
PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*))?$")


def _jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, job_id, job) for name, workflow in WORKFLOWS.items() for job_id, job in workflow["jobs"].items()]


def _test_tiers() -> list[str]:
    return [target for target in make_prerequisites("test") if target != "install"]


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_every_command_a_workflow_runs_exists_in_the_repository_or_on_the_runner(workflow: str) -> None:
    problems = [
        f"{step.where}: {problem}"
        for step in run_steps(workflow, WORKFLOWS[workflow])
        for problem in check_script(step.script)
    ]
    assert problems == []


def test_the_command_check_finds_what_does_not_exist() -> None:
    script = (
        "make lint no-such-target\n"
        ".venv/bin/stockcast-nope --help && .venv/bin/python flows/absent.py | kubectl get pods\n"
        "for flow in flows/*.nope; do\n"
        '  .venv/bin/python "$flow" --production argo-workflows create\n'
        "done\n"
        "BRANCH=prod .venv/bin/python -m stockcast.absent > out.txt\n"
    )
    assert check_script(script) == [
        "`make no-such-target`: no such Makefile target",
        "`.venv/bin/stockcast-nope`: not a console script of pyproject.toml",
        "`python flows/absent.py`: no such file in the repository",
        "`kubectl` is neither in this repository nor a tool of the runner "
        "(aws, curl, date, docker, echo, exit, mkdir, printf, sleep)",
        "`python $flow`: the loop over ['flows/*.nope'] matches no file",
        "`python -m stockcast.absent`: no such module in the repository",
    ]


def test_ci_runs_exactly_the_tiers_that_make_test_and_so_ci_run_runs() -> None:
    assert (REPO_ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    make_commands = [
        command
        for step in run_steps("ci.yml", WORKFLOWS["ci.yml"])
        for command in simple_commands(step.script)
        if command[0] == "make"
    ]
    assert all(len(command) == 2 for command in make_commands), make_commands
    assert Counter(command[1] for command in make_commands) == Counter(_test_tiers())


def test_ci_runs_nothing_but_the_tiers_and_the_minio_service() -> None:
    for step in run_steps("ci.yml", WORKFLOWS["ci.yml"]):
        heads = {command[0] for command in simple_commands(step.script)}
        assert heads == {"make"} or heads <= {"docker", "curl", "echo", "sleep", "exit", "for"}, step.where


def test_the_s3_flow_tests_run_against_minio_with_the_variables_the_local_tests_use() -> None:
    (job,) = [job for job in WORKFLOWS["ci.yml"]["jobs"].values() if "make test-flows" in str(job["steps"])]
    assert job["env"]["STOCKCAST_TEST_S3_ENDPOINT"] == "http://127.0.0.1:9000"
    conftest = (REPO_ROOT / "tests" / "conftest.py").read_text()
    assert (
        'os.environ.get("STOCKCAST_TEST_S3_ENDPOINT")' in conftest
        and '"METAFLOW_S3_ENDPOINT_URL": S3_ENDPOINT' in conftest
    )


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version() -> None:
    pins = [
        (path.name, match)
        for path in sorted(WORKFLOW_DIR.glob("*.yml"))
        for match in map(PIN.match, path.read_text().splitlines())
        if match and not match.group("action").startswith("./")
    ]
    assert pins
    for workflow, pin in pins:
        assert re.fullmatch(r"[0-9a-f]{40}", pin.group("ref")), f"{workflow}: {pin.group(0).strip()}"
        assert re.fullmatch(r"v\d+\.\d+\.\d+", pin.group("comment") or ""), f"{workflow}: {pin.group(0).strip()}"
    versions: dict[str, set[str]] = {}
    for _, pin in pins:
        versions.setdefault(pin.group("action"), set()).add(pin.group("ref"))
    assert all(len(refs) == 1 for refs in versions.values()), versions  # one version of each action everywhere


def test_permissions_are_least_privilege() -> None:
    for name, workflow in WORKFLOWS.items():
        assert workflow["permissions"] == {}, f"{name}: the workflow's default token must have no permission"
    for name, job_id, job in _jobs():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}: job {job_id} must state its permissions"
        assert permissions.get("contents") == "read", f"{name}: job {job_id}"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes <= {"id-token"}, f"{name}: job {job_id} writes {writes}"
        if "id-token" in writes and "uses" not in job:
            assert job.get("environment") == "production", (
                f"{name}: job {job_id} assumes an AWS role outside production"
            )


def test_aws_is_reached_through_oidc_never_with_stored_keys() -> None:
    for name in WORKFLOWS:
        text = (WORKFLOW_DIR / name).read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text, name
    steps = [
        step
        for workflow in WORKFLOWS.values()
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert steps
    assert all(step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}" for step in steps)


def test_pull_request_runs_get_no_secrets() -> None:
    for name, workflow in WORKFLOWS.items():
        assert "pull_request_target" not in workflow["on"], name
    ci = (WORKFLOW_DIR / "ci.yml").read_text()
    assert "pull_request" in WORKFLOWS["ci.yml"]["on"]
    assert "secrets." not in ci and "environment:" not in ci and "id-token" not in ci
    for name, workflow in WORKFLOWS.items():
        if "secrets." in (WORKFLOW_DIR / name).read_text():
            assert "pull_request" not in workflow["on"], name


def test_production_jobs_are_behind_the_environment_and_never_race() -> None:
    production = [(name, job_id, job) for name, job_id, job in _jobs() if job.get("environment") == "production"]
    assert {name for name, _, _ in production} == {"cd.yml", "deploy.yml", "schedule.yml"}
    for name, job_id, job in production:
        concurrency = job.get("concurrency") or {}
        assert concurrency.get("group", "").startswith("stockcast-production"), f"{name}: job {job_id}"
        assert concurrency.get("cancel-in-progress") is False, f"{name}: job {job_id} must not cancel a deploy"
    training = [
        job
        for name, _, job in production
        if name in ("cd.yml", "schedule.yml") and job["concurrency"]["group"] == "stockcast-production"
    ]
    assert len(training) == 2  # CD's training and the daily loop share one group: one promotion at a time

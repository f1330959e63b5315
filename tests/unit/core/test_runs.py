"""Which ``@project`` branch a run lands on, and which flow each file of ``flows/`` defines."""

from __future__ import annotations

import ast

import pytest

from stockcast.core.runs import FLOW_CLASSES, FLOWS_DIR, project_branch, user_branch


@pytest.mark.parametrize(
    ("branch", "production", "expected"),
    [("abc", False, "test.abc"), (None, True, "prod"), ("blue", True, "prod.blue")],
)
def test_a_run_lands_on_the_branch_project_gives_it(branch, production, expected):
    assert project_branch(branch, production=production) == expected


def test_without_options_a_run_lands_on_the_users_branch():
    assert project_branch() == user_branch()


def test_every_flow_file_is_known_by_the_flow_it_defines():
    defined = {
        path.stem: [node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)]
        for path in FLOWS_DIR.glob("*.py")
    }
    assert {stem: [name] for stem, name in FLOW_CLASSES.items()} == defined

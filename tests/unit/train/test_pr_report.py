"""The pull-request report's Markdown, from hand-made TrainFlow artefacts."""

from __future__ import annotations

import pandas as pd

from stockcast.train.pr_report import render_report

LEADERBOARD = pd.DataFrame(
    {
        "rank": [1, 2, 3],
        "candidate_id": ["catboost[depth=4]", "naive", "ridge[alpha|1]"],
        "mean_fold_rmse": [0.981234, 1.0, float("nan")],
        "rmse_vs_naive": [0.98123, 1.0, float("nan")],
        "hit_rate": [0.5321, 0.5, 0.49],
        "mae": [0.7, 0.8, 0.9],
    }
)
DECISION = {
    "challenger_id": "catboost[depth=4]",
    "promote": True,
    "reason": "Promote catboost[depth=4]: it beats the naive baseline (p = 0.01 < alpha 0.05).",
    "alpha": 0.05,
    "comparisons": [
        {
            "against": "naive",
            "reference_id": "naive",
            "statistic": -2.4,
            "p_value": 0.0123,
            "mean_loss_difference": -0.0021,
            "n_days": 189,
            "passed": True,
        },
        {
            "against": "champion",
            "reference_id": "v41",
            "statistic": -1.9,
            "p_value": 0.031,
            "mean_loss_difference": -0.0011,
            "n_days": 189,
            "passed": True,
        },
    ],
}


def _report(**overrides) -> str:
    arguments = {"model_version": "v42", "promoted": True, "run_pathspec": "TrainFlow/42", **overrides}
    return render_report(LEADERBOARD, DECISION, **arguments)


def test_the_verdict_and_its_reason_come_first() -> None:
    lines = _report().splitlines()
    assert lines[0] == "## TrainFlow on a small generated market"
    assert lines[2] == (
        "**Gate verdict: promoted to champion** — model `v42` (`catboost[depth=4]`) from run `TrainFlow/42`."
    )
    assert lines[4] == "> " + DECISION["reason"]
    assert "**Gate verdict: not promoted**" in _report(promoted=False)


def test_the_leaderboard_keeps_its_order_and_the_columns_the_run_has() -> None:
    report = _report()
    table = report[report.index("### Leaderboard") : report.index("### Gate comparisons")].strip().splitlines()
    assert (
        table[2] == "| rank | candidate | mean fold RMSE (price) | RMSE / naive (price) | direction hit-rate |"
    )  # no oracle, no mae
    assert table[3] == "|---|---|---|---|---|"
    assert table[4] == "| 1 | catboost[depth=4] | 0.9812 | 0.9812 | 0.5321 |"
    assert table[5] == "| 2 | naive | 1 | 1 | 0.5 |"
    assert table[6] == "| 3 | ridge[alpha\\|1] | – | – | 0.49 |"  # a pipe cannot break the table; NaN is a dash


def test_every_gate_comparison_is_listed() -> None:
    report = _report()
    comparisons = report[report.index("### Gate comparisons") :].strip().splitlines()
    assert comparisons[0] == "### Gate comparisons (one-sided Diebold–Mariano, alpha 0.05)"
    assert comparisons[2] == "| against | reference | paired days | mean loss difference | p-value | passed |"
    assert comparisons[4:] == [
        "| naive | naive | 189 | -0.0021 | 0.0123 | yes |",
        "| champion | v41 | 189 | -0.0011 | 0.031 | yes |",
    ]


def test_a_decision_without_comparisons_has_no_comparison_table() -> None:
    report = render_report(
        LEADERBOARD, {"reason": "no champion"}, model_version="v1", promoted=False, run_pathspec="TrainFlow/1"
    )
    assert "### Gate comparisons" not in report and report.endswith("| 3 | ridge[alpha\\|1] | – | – | 0.49 |\n")

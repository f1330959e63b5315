"""The flow files import no model library at the top, nor do the modules of the steps that fit no model.

Every Metaflow task, every card and the run itself is a fresh process that imports its flow file, so whatever the
file imports at the top is paid in every one of them: scikit-learn (with scipy.stats), CatBoost and BentoML cost
about two seconds a process here. The steps that need them import them themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
MODEL_LIBRARIES = ("sklearn", "catboost", "bentoml", "scipy.stats")


@pytest.mark.parametrize("flow", ["ingest", "train", "predict", "monitor"])
def test_a_flow_file_imports_no_model_library(flow: str) -> None:
    # The flow's own folder first, as when Metaflow runs it; not as __main__, so the flow only gets defined.
    check = (
        f"import runpy, sys; runpy.run_path({str(FLOWS_DIR / f'{flow}.py')!r}, run_name='flow'); "
        f"print(sorted(name for name in {MODEL_LIBRARIES!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=FLOWS_DIR, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", f"flows/{flow}.py loads {result.stdout.strip()} when imported"


def test_the_training_steps_that_fit_no_model_load_no_model_library() -> None:
    # TrainFlow's start, features, join_features and split_backtests tasks use these modules (and unpickle their
    # classes) but fit nothing: a shard task of a large market should not pay for the model libraries.
    modules = ["stockcast.train.selection", "stockcast.train.backtest", "stockcast.train.candidates"]
    check = f"import {', '.join(modules)}, sys; print(sorted(n for n in {MODEL_LIBRARIES!r} if n in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"{modules} load {result.stdout.strip()}"

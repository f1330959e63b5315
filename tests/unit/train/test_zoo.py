"""The model zoo: grid expansion and ids, every factory end to end, and statistics learned from training rows only."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockcast.train.candidates import CandidateSpec, candidate_id
from stockcast.train.factories import (
    CONTEXT_PARAMETERS,
    FACTORIES,
    build_estimator,
    fit_candidate,
    hyper_parameter_types,
    usable_task_type,
)
from stockcast.train.zoo import (
    BoundedReturns,
    QuantileClipper,
    as_trained,
    predict_next_close,
    predict_next_return,
    predict_returns,
)

FEATURES = ["signal", "noise", "sector"]
CATEGORICAL = ["sector"]
# Small settings so that every factory fits in well under a second.
FAST_PARAMS = {"catboost": {"iterations": 30, "depth": 3}, "hist_gradient_boosting": {"max_iter": 20}}


def modelling_frame(n_tickers: int = 4, n_days: int = 80, seed: int = 0) -> pd.DataFrame:
    """A small modelling frame: next_return = 0.01 * signal + noise; missing values; a missing sector."""
    rng = np.random.default_rng(seed)
    n_rows = n_tickers * n_days
    frame = pd.DataFrame(
        {
            "date": np.tile(pd.bdate_range("2024-01-02", periods=n_days).to_numpy(), n_tickers),
            "ticker": np.repeat([f"T{i}" for i in range(n_tickers)], n_days),
            "close": np.repeat(rng.uniform(20, 200, n_tickers), n_days),
            "signal": rng.normal(size=n_rows),
            "noise": np.where(rng.random(n_rows) < 0.1, np.nan, rng.normal(size=n_rows)),
            "sector": pd.Series(np.repeat(["tech", "energy", "tech", None][:n_tickers], n_days), dtype="str"),
            "is_warm": np.tile(np.arange(n_days) >= 5, n_tickers),
        }
    )
    next_return = 0.01 * frame["signal"] + 0.002 * rng.normal(size=n_rows)
    last_day = frame.groupby("ticker").cumcount() == n_days - 1
    return frame.assign(
        next_return=next_return.mask(last_day),
        next_close=(frame["close"] * (1 + next_return)).mask(last_day),
    )


def spec_for(factory: str, **params: object) -> CandidateSpec:
    merged = {**FAST_PARAMS.get(factory, {}), **params}
    # No target clipping: the drift model's prediction is then exactly its training mean (BoundedReturns has tests).
    return CandidateSpec(
        candidate_id(factory, merged), factory, factory, merged, random_seed=7, target_clip_quantile=0.0
    )


def test_candidate_ids_format_values_unambiguously() -> None:
    assert candidate_id("m", {}) == "m"
    assert candidate_id("m", {"b": True, "a": 1e-05, "c": "x", "d": 1.0}) == "m[a=1e-05,b=true,c=x,d=1.0]"


def test_hyper_parameter_schema_is_the_factory_signature_without_context() -> None:
    assert set(hyper_parameter_types("catboost")) == {
        "iterations",
        "depth",
        "learning_rate",
        "l2_leaf_reg",
        "thread_count",
        "task_type",
    }
    assert hyper_parameter_types("naive") == {}
    for name in FACTORIES:
        assert not set(hyper_parameter_types(name)) & CONTEXT_PARAMETERS


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_every_factory_fits_and_predicts_with_missing_and_unseen_values(factory: str) -> None:
    frame = modelling_frame()
    training, later = frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]
    unseen = later.assign(sector=pd.Series(["utilities"] * len(later), index=later.index, dtype="str"))

    estimator = fit_candidate(spec_for(factory), training, FEATURES, CATEGORICAL)
    predicted = predict_next_close(estimator, pd.concat([later, unseen]), FEATURES)

    assert predicted.shape == (2 * len(later),)
    assert np.isfinite(predicted).all()


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_predictions_are_row_wise_so_no_statistic_is_learned_from_the_test_batch(factory: str) -> None:
    frame = modelling_frame()
    estimator = fit_candidate(spec_for(factory), frame.iloc[:200], FEATURES, CATEGORICAL)
    test = frame.iloc[200:]
    shifted_others = test.assign(signal=test["signal"].where(test.index == test.index[0], test["signal"] + 50.0))

    first_alone = predict_next_return(estimator, test.iloc[[0]], FEATURES)[0]

    assert predict_next_return(estimator, test, FEATURES)[0] == pytest.approx(first_alone, abs=1e-12)
    assert predict_next_return(estimator, shifted_others, FEATURES)[0] == pytest.approx(first_alone, abs=1e-12)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_fitted_estimators_survive_pickling_as_metaflow_artefacts_do(factory: str) -> None:
    frame = modelling_frame()
    estimator = fit_candidate(spec_for(factory), frame, FEATURES, CATEGORICAL)

    restored = pickle.loads(pickle.dumps(estimator))

    np.testing.assert_array_equal(
        predict_next_close(restored, frame, FEATURES), predict_next_close(estimator, frame, FEATURES)
    )


def test_naive_predicts_todays_close_and_drift_the_training_mean_return() -> None:
    frame = modelling_frame()
    usable = frame[frame["is_warm"] & frame["next_return"].notna()]

    naive = fit_candidate(spec_for("naive"), frame, FEATURES, CATEGORICAL)
    drift = fit_candidate(spec_for("drift"), frame, FEATURES, CATEGORICAL)

    np.testing.assert_array_equal(predict_next_close(naive, frame, FEATURES), frame["close"].to_numpy())
    np.testing.assert_allclose(predict_next_return(drift, frame, FEATURES), usable["next_return"].mean(), rtol=1e-12)


def test_a_real_model_learns_the_planted_signal() -> None:
    frame = modelling_frame(n_days=200)
    estimator = fit_candidate(spec_for("ridge", alpha=1.0), frame.iloc[:400], FEATURES, CATEGORICAL)
    test = frame.iloc[400:].dropna(subset=["next_return"])

    correlation = np.corrcoef(predict_next_return(estimator, test, FEATURES), test["next_return"])[0, 1]

    # next_return = 0.01 * signal + noise(0.002): the signal explains ~96 % of the variance.
    assert correlation > 0.9


def test_scaler_and_imputer_are_fitted_on_usable_training_rows_only() -> None:
    frame = modelling_frame()
    cold = ~frame["is_warm"]
    # Rows that may not be trained on carry absurd values: if they leaked into any statistic it would show.
    poisoned = frame.assign(signal=frame["signal"].mask(cold, 1e6), noise=frame["noise"].mask(cold, -1e6))
    usable = frame[frame["is_warm"] & frame["next_return"].notna()]

    estimator = fit_candidate(spec_for("ridge", clip_quantile=0.0), poisoned, FEATURES, CATEGORICAL)
    numeric = estimator.regressor_.named_steps["features"].named_transformers_["numeric"]
    scaler, imputer = numeric.named_steps["standardscaler"], numeric.named_steps["simpleimputer"]

    assert scaler.mean_[0] == pytest.approx(usable["signal"].mean(), rel=1e-12)
    assert scaler.scale_[0] == pytest.approx(usable["signal"].std(ddof=0), rel=1e-12)
    assert imputer.statistics_[1] == pytest.approx(usable["noise"].median(), rel=1e-12)


def test_bounded_returns_clip_training_targets_and_predictions_to_the_fold_band() -> None:
    frame = modelling_frame()
    usable = frame[frame["is_warm"] & frame["next_return"].notna()]
    poisoned = frame.copy()
    poisoned.loc[usable.index[:3], "next_return"] = [7.32, -0.67, 3.0]  # a rename's gap, a spin-off, a bad row
    spec = CandidateSpec("drift", "drift", "drift", {}, target_clip_quantile=0.01)

    estimator = fit_candidate(spec, poisoned, FEATURES, CATEGORICAL)

    targets = poisoned.loc[usable.index, "next_return"].to_numpy()
    low, high = np.quantile(targets, [0.01, 0.99])
    assert estimator.band_ == pytest.approx((low, high))
    assert estimator.n_targets_clipped_ >= 3
    # Drift learns the mean of the clipped targets, so three absurd rows barely move it.
    assert predict_next_return(estimator, frame.iloc[:1], FEATURES)[0] == pytest.approx(
        np.clip(targets, low, high).mean()
    )
    wild = estimator.regressor_.__class__(strategy="constant", constant=0.5).fit(frame[FEATURES], frame["signal"])
    estimator.regressor_ = wild  # a model gone wrong: every prediction far outside the band
    predicted, clipped = predict_returns(estimator, frame.iloc[:4], FEATURES)
    np.testing.assert_array_equal(predicted, np.full(4, high))
    assert clipped.all()


def test_the_naive_baseline_is_never_bounded() -> None:
    naive = fit_candidate(spec_for("naive"), modelling_frame(), FEATURES, CATEGORICAL)
    assert not isinstance(naive, BoundedReturns)


def test_quantile_clipper_clips_new_data_to_the_training_bounds() -> None:
    training = np.column_stack([np.arange(101.0), np.full(101, np.nan)])
    clipper = QuantileClipper(quantile=0.1).fit(training)

    clipped = clipper.transform(np.array([[-1000.0, 5.0], [50.0, np.nan], [1000.0, -5.0]]))

    np.testing.assert_allclose(clipped[:, 0], [10.0, 50.0, 90.0])
    np.testing.assert_array_equal(clipped[:, 1], [5.0, np.nan, -5.0])  # no bounds learned: untouched


def test_catboost_writes_no_files_and_uses_the_configured_threads_and_native_categories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    estimator = fit_candidate(spec_for("catboost", thread_count=1), modelling_frame(), FEATURES, CATEGORICAL)
    params = estimator.regressor_.named_steps["model"].get_params()

    assert list(tmp_path.iterdir()) == []
    assert params["allow_writing_files"] is False
    assert params["thread_count"] == 1
    assert params["cat_features"] == ["sector"]


def test_a_catboost_candidate_without_a_gpu_trains_on_the_cpu_says_so_once_and_is_recorded_as_such(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from catboost.utils import get_gpu_device_count

    if get_gpu_device_count() > 0:
        pytest.skip("this machine has a GPU: CatBoost trains on it, nothing falls back")
    capfd.readouterr()
    usable_task_type.cache_clear()  # a fresh process, as a Metaflow task is
    spec = spec_for("catboost", task_type="GPU")
    frame = modelling_frame()

    fits = [fit_candidate(spec, frame, FEATURES, CATEGORICAL) for _fold in range(3)]
    printed = capfd.readouterr()

    assert printed.out.splitlines() == [
        'CatBoost: task_type = "GPU" asked for, but no GPU is usable here: training on the CPU instead.'
    ]
    assert printed.err == ""  # CatBoost's own complaint about the missing CUDA driver is silenced
    assert {fit.regressor_.named_steps["model"].get_params()["task_type"] for fit in fits} == {"CPU"}
    trained = as_trained(spec, fits[0])
    assert trained.params == {**spec.params, "task_type": "CPU"}
    assert trained.candidate_id == "catboost[depth=3,iterations=30,task_type=CPU]"
    assert as_trained(spec_for("catboost"), fits[0]) == spec_for("catboost")  # CPU asked, CPU ran
    assert as_trained(spec_for("ridge"), fit_candidate(spec_for("ridge"), frame, FEATURES, CATEGORICAL)) == spec_for(
        "ridge"
    )


def test_estimators_work_without_categorical_features() -> None:
    frame = modelling_frame()
    for factory in FACTORIES:
        estimator = fit_candidate(spec_for(factory), frame, ["signal", "noise"], [])
        assert np.isfinite(predict_next_close(estimator, frame, ["signal", "noise"])).all()


def test_inconsistent_columns_and_empty_training_data_are_refused() -> None:
    frame = modelling_frame()

    with pytest.raises(ValueError, match=r"categorical columns \['sector'\] are not among the feature columns"):
        build_estimator(spec_for("ridge"), ["signal"], ["sector"])
    with pytest.raises(ValueError, match="duplicates"):
        build_estimator(spec_for("ridge"), ["signal", "signal"], [])
    with pytest.raises(ValueError, match=r"the modelling frame: missing column\(s\) \['noise'\]"):
        fit_candidate(spec_for("ridge"), frame.drop(columns="noise"), FEATURES, CATEGORICAL)
    with pytest.raises(ValueError, match="no usable rows"):
        fit_candidate(spec_for("ridge"), frame.assign(is_warm=False), FEATURES, CATEGORICAL)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_every_factory_fits_when_a_column_has_no_value_at_all(factory: str) -> None:
    # Prices-only data: every fundamental column, the sector included, is empty in every row.
    frame = modelling_frame()
    frame = frame.assign(noise=np.nan, sector=pd.Series(np.nan, index=frame.index, dtype="str"))
    estimator = fit_candidate(spec_for(factory, **FAST_PARAMS.get(factory, {})), frame, FEATURES, CATEGORICAL)
    predicted = predict_next_return(estimator, frame, FEATURES)
    assert np.isfinite(predicted).all()

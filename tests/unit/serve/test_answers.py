"""Serving: batch and real-time answers agree with the model and with each other, and every refusal says why."""

from __future__ import annotations

import pickle
import re
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features import FeatureSetMismatch, get_feature_set, latest_feature_rows
from stockcast.core.registry import ModelRecord
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.data.contract import PRICES
from stockcast.serve.answers import (
    ServingInputError,
    TickerQuery,
    answer_queries,
    predict_from_history,
    predict_tickers,
    prediction_records,
)
from stockcast.serve.bundle import CONTEXT_MARGIN_DAYS, ServingBundle, build_bundle, read_bundle, write_bundle
from stockcast.serve.schema import PREDICTION_COLUMNS
from stockcast.train.candidates import CandidateSpec
from stockcast.train.factories import FACTORIES, fit_candidate
from stockcast.train.selection import build_modelling_data
from stockcast.train.zoo import predict_next_close, predict_next_return
from tests.factories import fit_model, make_record, with_split, year_market

FEATURE_SET = get_feature_set("full")
MIN_HISTORY = FEATURE_SET.min_history


def _record(fingerprint: str = FEATURE_SET.fingerprint) -> ModelRecord:
    return make_record("v42", feature_fingerprint=fingerprint)


@pytest.fixture(scope="module")
def market() -> Any:
    """Six tickers in two sectors over 2024: enough for every feature to warm up (min_history 127)."""
    return year_market(n_tickers=6, seed=11)


@pytest.fixture(scope="module")
def estimator(market: Any) -> Any:
    return fit_model(market, _record())


@pytest.fixture(scope="module")
def bundle(market: Any, estimator: Any) -> ServingBundle:
    return build_bundle(_record(), market.prices, market.financials, estimator=estimator)


def _history(market: Any, ticker: str, *, days: int | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
    rows = market.prices[market.prices["ticker"] == ticker]
    if end is not None:
        rows = rows[rows["date"] <= end]
    return rows.tail(days) if days is not None else rows


# --- predict_tickers -------------------------------------------------------------------------------------------


def test_predict_tickers_is_the_model_prediction_on_the_latest_feature_rows(market, estimator, bundle) -> None:
    requested = list(reversed(bundle.tickers[:4]))  # not in snapshot order: the answer keeps request order
    latest = latest_feature_rows(market.prices, market.financials, feature_set=FEATURE_SET)
    rows = latest.set_index("ticker").loc[requested].reset_index()

    answer = predict_tickers(bundle, requested)

    assert list(answer.columns) == PREDICTION_COLUMNS
    assert answer["ticker"].tolist() == requested
    np.testing.assert_allclose(
        answer["predicted_close"], predict_next_close(estimator, rows, FEATURE_SET.feature_columns), rtol=1e-12
    )
    np.testing.assert_array_equal(answer["last_close"], rows["close"])
    np.testing.assert_allclose(answer["predicted_close"], answer["last_close"] * (1 + answer["predicted_return"]))
    assert (answer["as_of"] == market.prices["date"].max()).all()
    assert (answer["model_version"] == "v42").all()
    # Daily moves of a few per cent at most: a sanity band from real markets, not a mirror of the code.
    assert answer["predicted_return"].abs().max() < 0.05


def test_predict_tickers_accepts_the_bundles_own_date_as_of(bundle) -> None:
    explicit = predict_tickers(bundle, bundle.tickers[:2], as_of=bundle.as_of.date().isoformat())
    pd.testing.assert_frame_equal(explicit, predict_tickers(bundle, bundle.tickers[:2]))


@pytest.mark.parametrize(
    ("pick", "as_of", "field", "message"),
    [
        (lambda known: [], None, "tickers", "no tickers requested"),
        (lambda known: ["ZZZZ", known[0], "QQQQ"], None, "tickers", "unknown ticker(s) ['QQQQ', 'ZZZZ']"),
        (lambda known: [known[1], known[0], known[1]], None, "tickers", "more than once: ['{1}']"),
        (lambda known: known[:1], "2024-06-03", "as_of", "as_of 2024-06-03 is not available: model v42 answers as of"),
    ],
    ids=["empty", "unknown", "repeated", "other-day"],
)
def test_predict_tickers_refuses_what_it_cannot_answer(bundle, pick, as_of, field, message) -> None:
    with pytest.raises(ServingInputError, match=re.escape(message.format(*bundle.tickers))) as caught:
        predict_tickers(bundle, pick(bundle.tickers), as_of=as_of)
    assert caught.value.field == field


def test_predict_tickers_names_tickers_without_a_recent_or_warm_row(market, estimator) -> None:
    """A ticker that stopped trading early, and one listed too recently for its features to warm up."""
    stale, young = sorted(market.prices["ticker"].unique())[:2]
    prices = market.prices
    last_day = prices["date"].max()
    keep = ~((prices["ticker"] == stale) & (prices["date"] > last_day - pd.Timedelta(days=7)))
    keep &= ~((prices["ticker"] == young) & (prices["date"] < last_day - pd.Timedelta(days=70)))
    ragged = build_bundle(_record(), prices[keep], market.financials, estimator=estimator)

    with pytest.raises(ServingInputError, match=f"no prices on {last_day.date()} for: {stale}") as caught:
        predict_tickers(ragged, [stale], as_of=last_day)
    assert caught.value.field == "tickers"
    with pytest.raises(ServingInputError, match=rf"not enough recent history to predict \['{young}'\]"):
        predict_tickers(ragged, [young])
    assert predict_tickers(ragged, [stale])["as_of"].iloc[0] < last_day  # without as_of: its own last day


FAST_PARAMS = {"catboost": {"iterations": 20}, "hist_gradient_boosting": {"max_iter": 20}}


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_predict_tickers_answers_exactly_what_the_estimator_predicts_on_those_rows(market, factory) -> None:
    """The bundle runs each model's fitted preprocessing over its latest rows once, when it is made; the answers
    must still be bit for bit the estimator's own, asked one ticker at a time or for all of them."""
    data = build_modelling_data(market.prices, market.financials, None, FEATURE_SET)
    spec = CandidateSpec(factory, factory, factory, FAST_PARAMS.get(factory, {}))
    estimator = fit_candidate(spec, data.read(), data.feature_columns, data.categorical_columns)
    bundle = build_bundle(_record(), market.prices, market.financials, estimator=estimator)
    rows = bundle.latest_rows.set_index("ticker")

    one_at_a_time = [predict_tickers(bundle, [ticker])["predicted_return"].iloc[0] for ticker in bundle.tickers]
    all_at_once = predict_tickers(bundle, bundle.tickers)["predicted_return"]

    expected_alone = [
        predict_next_return(estimator, rows.loc[[ticker]], FEATURE_SET.feature_columns)[0] for ticker in bundle.tickers
    ]
    np.testing.assert_array_equal(one_at_a_time, expected_alone)
    np.testing.assert_array_equal(all_at_once, predict_next_return(estimator, rows, FEATURE_SET.feature_columns))
    if factory != "ridge":  # trees and constants: a ticker's answer is the same whatever it is asked with
        together = answer_queries(bundle, [TickerQuery([ticker]) for ticker in bundle.tickers])
        assert [answer[0]["predicted_return"] for answer in together] == one_at_a_time


def test_a_non_finite_model_output_is_an_error_not_an_answer(bundle) -> None:
    class NanModel:
        def predict(self, features: pd.DataFrame) -> np.ndarray:
            return np.full(len(features), np.nan)

    with pytest.raises(RuntimeError, match="non-finite prediction"):
        predict_tickers(replace(bundle, estimator=NanModel()), bundle.tickers[:1])


# --- answer_queries: several requests, one model call ------------------------------------------------------------


class _CountingModel:
    """Wraps a fitted final step and counts its predict calls and the rows they were asked for."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, []

    def predict(self, rows: Any) -> np.ndarray:
        self.calls.append(len(rows))
        return self.model.predict(rows)


def test_queries_answered_together_get_exactly_their_own_answers_from_one_model_call(bundle) -> None:
    known = bundle.tickers
    queries = [
        TickerQuery([known[2], known[0]]),
        TickerQuery([known[0]], as_of=bundle.as_of.date()),  # a ticker another query also asks for
        TickerQuery(["NOPE"]),
        TickerQuery([known[1]], as_of="2024-06-03"),
        TickerQuery([known[3], known[3]]),
        TickerQuery(list(reversed(known))),
    ]
    counting = _CountingModel(bundle.prepared.model)
    object.__setattr__(bundle.prepared, "model", counting)
    try:
        answers = answer_queries(bundle, queries)
    finally:
        object.__setattr__(bundle.prepared, "model", counting.model)

    assert counting.calls == [len(known)]  # one call, each ticker once, whatever the overlap
    assert len(answers) == len(queries)
    for query, answer in zip(queries, answers, strict=True):
        try:
            expected = prediction_records(predict_tickers(bundle, query.tickers, query.as_of))
        except ServingInputError as error:
            assert isinstance(answer, ServingInputError)
            assert (str(answer), answer.field) == (str(error), error.field)
        else:
            # Ridge predicts with a BLAS matrix-vector product, whose last bits can depend on how many rows it gets
            # (as for predict_tickers asked for one ticker or several); tree models agree exactly (test below).
            assert [{**record, "predicted_return": None, "predicted_close": None} for record in answer] == [
                {**record, "predicted_return": None, "predicted_close": None} for record in expected
            ]
            for got, want in zip(answer, expected, strict=True):
                assert got["predicted_return"] == pytest.approx(want["predicted_return"], rel=1e-12, abs=1e-15)
                assert got["predicted_close"] == pytest.approx(want["predicted_close"], rel=1e-12)
    assert [type(answer).__name__ for answer in answers] == ["list", "list", *["ServingInputError"] * 3, "list"]


def test_no_answerable_query_means_no_model_call(bundle) -> None:
    counting = _CountingModel(bundle.prepared.model)
    object.__setattr__(bundle.prepared, "model", counting)
    try:
        (answer,) = answer_queries(bundle, [TickerQuery([])])
    finally:
        object.__setattr__(bundle.prepared, "model", counting.model)
    assert isinstance(answer, ServingInputError) and answer.field == "tickers"
    assert counting.calls == []


def test_a_non_finite_prediction_fails_only_the_queries_asking_for_that_ticker(bundle) -> None:
    broken, healthy = bundle.tickers[0], bundle.tickers[1]

    class NanForTheFirstRow:
        """Answers NaN for the first row it is given: the broken ticker's, the first of the bundle's rows."""

        def predict(self, features: np.ndarray) -> np.ndarray:
            predicted = np.full(len(features), 0.01)
            predicted[0] = np.nan
            return predicted

    nan_bundle = replace(bundle, estimator=NanForTheFirstRow())
    assert nan_bundle.prepared.positions[broken] == 0
    failed, answered = answer_queries(nan_bundle, [TickerQuery([healthy, broken]), TickerQuery([healthy])])
    assert isinstance(failed, RuntimeError) and f"non-finite prediction for ['{broken}']" in str(failed)
    assert [record["ticker"] for record in answered] == [healthy]


# --- predict_from_history --------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [MIN_HISTORY, None], ids=["min_history-rows", "whole-history"])
def test_a_tickers_own_history_gives_the_batch_answer(market, bundle, days) -> None:
    """Real time and batch agree: the same rows through features_from_history and latest_feature_rows."""
    for ticker in bundle.tickers[:3]:
        history = _history(market, ticker, days=days)
        own_reports = market.financials[market.financials["ticker"] == ticker]

        from_context = predict_from_history(bundle, history)
        with_reports = predict_from_history(bundle, history, own_reports)
        batch = predict_tickers(bundle, [ticker])

        for answer in (from_context, with_reports):
            pd.testing.assert_frame_equal(answer, batch, check_exact=False, rtol=1e-10)


def test_a_history_ending_inside_the_context_margin_matches_the_batch_answer_of_that_day(
    market, estimator, bundle
) -> None:
    """Cross-sectional ranks need the other tickers' look-back on that day, which the context keeps."""
    ticker = bundle.tickers[2]
    day = np.sort(market.prices["date"].unique())[-CONTEXT_MARGIN_DAYS + 1]
    latest = latest_feature_rows(market.prices, market.financials, feature_set=FEATURE_SET, as_of=day)
    expected = predict_next_close(estimator, latest[latest["ticker"] == ticker], FEATURE_SET.feature_columns)

    answer = predict_from_history(bundle, _history(market, ticker, end=day))

    assert answer["as_of"].iloc[0] == day
    np.testing.assert_allclose(answer["predicted_close"], expected, rtol=1e-10)


def test_predict_from_history_leaves_its_inputs_unchanged(market, bundle) -> None:
    history = _history(market, bundle.tickers[0], days=MIN_HISTORY + 5).sample(frac=1.0, random_state=0)
    reports = market.financials[market.financials["ticker"] == bundle.tickers[0]]
    history_before, reports_before = history.copy(), reports.copy()

    predict_from_history(bundle, history, reports)

    pd.testing.assert_frame_equal(history, history_before)
    pd.testing.assert_frame_equal(reports, reports_before)


def test_too_short_a_history_says_how_many_days_are_needed(market, bundle) -> None:
    history = _history(market, bundle.tickers[0], days=MIN_HISTORY - 1)
    with pytest.raises(
        ServingInputError, match=f"needs at least {MIN_HISTORY} trading days.*{MIN_HISTORY - 1} were"
    ) as caught:
        predict_from_history(bundle, history)
    assert caught.value.field == "prices"


def _two_tickers(market: Any, bundle: ServingBundle) -> pd.DataFrame:
    return pd.concat([_history(market, ticker, days=MIN_HISTORY) for ticker in bundle.tickers[:2]])


def _repeated_day(market: Any, bundle: ServingBundle) -> pd.DataFrame:
    history = _history(market, bundle.tickers[0], days=MIN_HISTORY + 1)
    return pd.concat([history, history.tail(1)])


def _gap(market: Any, bundle: ServingBundle) -> pd.DataFrame:
    """Fifteen trading days missing three weeks before the end: the last row's look-back straddles a gap."""
    history = _history(market, bundle.tickers[0])
    return history.drop(history.index[-30:-15])


def _no_volume(market: Any, bundle: ServingBundle) -> pd.DataFrame:
    return _history(market, bundle.tickers[0], days=MIN_HISTORY).drop(columns="volume")


@pytest.mark.parametrize(
    ("make_history", "field", "message"),
    [
        (_two_tickers, "prices", "exactly one ticker, got 2"),
        (_repeated_day, "prices", "dates listed more than once: ['2024-12-31']"),
        (_gap, "prices", "not enough recent history to predict"),
        (_no_volume, "prices", "lack column(s) ['volume']"),
    ],
)
def test_predict_from_history_refuses_unusable_rows(market, bundle, make_history, field, message) -> None:
    with pytest.raises(ServingInputError, match=re.escape(message)) as caught:
        predict_from_history(bundle, make_history(market, bundle))
    assert caught.value.field == field


def test_financials_of_another_ticker_are_refused(market, bundle) -> None:
    first, second = bundle.tickers[:2]
    with pytest.raises(ServingInputError, match=f"history of {first} hold other tickers' reports") as caught:
        predict_from_history(bundle, _history(market, first), market.financials[market.financials["ticker"] == second])
    assert caught.value.field == "financials"


# --- the bundle ------------------------------------------------------------------------------------------------


def test_build_bundle_refuses_a_model_of_another_feature_set_version(market, estimator) -> None:
    with pytest.raises(FeatureSetMismatch, match=f"expects {'0' * 64}.*built with {FEATURE_SET.fingerprint}"):
        build_bundle(_record(fingerprint="0" * 64), market.prices, market.financials, estimator=estimator)


def test_a_bundle_whose_features_this_code_computes_differently_refuses_histories(market, bundle) -> None:
    stale = replace(bundle, feature_fingerprint="f" * 64)
    with pytest.raises(FeatureSetMismatch, match="f" * 64):
        predict_from_history(stale, _history(market, bundle.tickers[0]))


def test_the_bundle_keeps_a_trimmed_context_and_leaves_the_snapshot_unchanged(market, estimator) -> None:
    prices_before = market.prices.copy()
    bundle = build_bundle(_record(), market.prices, market.financials, estimator=estimator)

    pd.testing.assert_frame_equal(market.prices, prices_before)
    assert list(bundle.context_prices.columns) == PRICES.required_names
    assert bundle.context_prices.groupby("ticker").size().eq(MIN_HISTORY + CONTEXT_MARGIN_DAYS).all()
    assert bundle.context_prices.groupby("ticker")["date"].max().eq(market.prices["date"].max()).all()
    assert len(bundle.context_financials) == len(market.financials)
    assert bundle.min_history == MIN_HISTORY and bundle.feature_columns == tuple(FEATURE_SET.feature_columns)
    assert bundle.record.run_pathspec == "TrainFlow/42" and bundle.model_version == "v42"


def test_a_bundle_survives_the_round_trip_through_its_file(tmp_path, bundle) -> None:
    path = tmp_path / "bundle.pkl"
    write_bundle(bundle, path)

    pd.testing.assert_frame_equal(
        predict_tickers(read_bundle(path), bundle.tickers), predict_tickers(bundle, bundle.tickers)
    )

    # The file holds the bundle's fields only, not what it prepares for answering from them: bundles written before
    # and after that preparation existed load alike, and it is rebuilt when read.
    assert set(bundle.__getstate__()) == {field.name for field in fields(ServingBundle) if field.init}

    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"not": "a bundle"}))
    with pytest.raises(TypeError, match="holds a dict, not a ServingBundle"):
        read_bundle(tmp_path / "other.pkl")


def test_answers_outside_the_models_plausible_band_are_clipped_to_it_and_recognised(market, estimator):
    narrow = pickle.loads(pickle.dumps(estimator))
    narrow.band_ = (-1e-6, 1e-6)  # a band no real prediction fits in: every answer is clipped
    bundle = build_bundle(_record(), market.prices, market.financials, estimator=narrow)

    answer = predict_tickers(bundle, bundle.tickers[:3])

    assert set(np.abs(answer["predicted_return"])) == {1e-6}
    assert bundle.prepared.was_clipped(answer["predicted_return"].to_numpy()).all()
    np.testing.assert_array_equal(
        answer["predicted_return"], predict_next_return(narrow, bundle.latest_rows.head(3), FEATURE_SET.feature_columns)
    )
    unclipped = predict_tickers(
        build_bundle(_record(), market.prices, market.financials, estimator=estimator), bundle.tickers[:3]
    )
    assert not bundle.prepared.was_clipped(unclipped["predicted_return"].to_numpy()).any()


def test_a_history_with_a_split_the_service_knows_gives_the_answer_without_it(market, estimator):
    ticker = sorted(market.prices["ticker"].unique())[0]
    ex_date = market.prices["date"].sort_values().unique()[-20]
    split, reports = with_split(market.prices, market.financials, ticker, ex_date, 2.0)
    actions = pd.DataFrame(
        {"ticker": [ticker], "ex_date": [ex_date], "kind": ["split"], "ratio": [2.0], "new_ticker": [np.nan]}
    )
    plain = build_bundle(_record(), market.prices, market.financials, estimator=estimator)
    knowing = build_bundle(_record(), split, reports, actions=actions, estimator=estimator)

    history = _history(market, ticker).assign(ticker=ticker)
    split_history = split[split["ticker"] == ticker]
    expected = predict_from_history(plain, history)
    answered = predict_from_history(knowing, split_history)
    np.testing.assert_allclose(answered["predicted_return"], expected["predicted_return"], rtol=1e-9)
    np.testing.assert_allclose(
        predict_tickers(knowing, [ticker])["predicted_return"],
        predict_tickers(plain, [ticker])["predicted_return"],
        rtol=1e-9,
    )


def test_a_bundle_pickled_before_the_data_rules_existed_gets_the_defaults(market: Any, estimator: Any) -> None:
    bundle = build_bundle(_record(), market.prices, market.financials, estimator=estimator, calendar="XNYS")
    state = bundle.__getstate__()
    older = {name: value for name, value in state.items() if name not in ("calendar", "ticker_pattern")}
    restored = ServingBundle.__new__(ServingBundle)
    restored.__setstate__(older)
    assert (restored.calendar, restored.ticker_pattern) == ("data", DEFAULT_TICKER_PATTERN)
    assert pickle.loads(pickle.dumps(bundle)).calendar == "XNYS"

"""Decisions: turn next-day return predictions into buy / sell / hold, and backtest that rule.

The rule (`DecisionRule`; `cost` is `cost_bps`/10 000, the cost of trading one unit of weight one way, and
`threshold` is `threshold_bps`/10 000). For each ticker with predicted return r:

- its *net return* is the edge left after paying the cost in the direction r points to:
  `sign(r) * max(|r| - cost, 0)`;
- **long signal** when r - cost > threshold (net return > threshold);
- **short signal** when r + cost < -threshold (net return < -threshold);
- **no signal** otherwise.

Positions follow the signals: a long signal wants a long position; a short signal wants out of a long and, when
`allow_short`, a short position; no signal keeps what is held (and stays out of what is not). At most
`max_positions` positions are held: positions kept from yesterday come first (re-ranking them daily would pay the
cost to swap near-equal names back and forth), then new positions by net return in their direction, best first;
wanted positions beyond the limit are not opened. Every position gets the same weight, `min(1 / n_positions,
max_weight)`, signed (negative = short); whatever the caps leave over stays in cash. The *action* is the trade
that gets there from what was held: "buy" (open a long or cover a short), "sell" (exit a long or open a short) or
"hold" (no change of direction: keep, or stay out). Weights are re-equalised every day, which moves some weight
without being a trade.

The backtest (`backtest_rule`) applies the rule day by day to walk-forward predictions, each day starting from the
previous day's positions. A position taken at the close of day d earns the ticker's return to its next close;
changing weights costs `cost` per unit of weight changed. Weights are targets set at each close: price moves
between closes do not count as turnover, and the positions still open after the last day are not charged an exit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt

from stockcast.core.config import Settings
from stockcast.core.frames import require_columns
from stockcast.core.registry import ModelRecord
from stockcast.core.runs import run_by_pathspec
from stockcast.core.storage import ObjectStore
from stockcast.operate.monitoring import join_realised
from stockcast.operate.tables import Publication, publish_decisions
from stockcast.serve.client import StockcastClient

TRADING_DAYS_PER_YEAR = 252
BASIS_POINTS_PER_UNIT = 10_000
ACTIONS = ("buy", "sell", "hold")
BACKTEST_COLUMNS = ["date", "ticker", "close", "next_close", "predicted_return"]
DAILY_COLUMNS = ["date", "gross_return", "cost", "net_return", "equity", "turnover", "n_positions"]
MODEL_RULE, MOMENTUM_RULE, BUY_AND_HOLD = "model rule", "momentum rule", "buy and hold"
STRATEGIES = (MODEL_RULE, MOMENTUM_RULE, BUY_AND_HOLD)


class DecisionRule(Settings):
    """The buy / sell / hold rule's settings (see the module docstring for the rule itself)."""

    cost_bps: Annotated[float, Field(ge=0.0, lt=10_000.0)] = 10.0
    """Cost of trading one unit of weight, one way, in basis points (commission, spread and slippage)."""
    threshold_bps: Annotated[float, Field(ge=0.0, lt=10_000.0)] = 0.0
    """The margin, in basis points, by which the predicted return net of the cost must clear zero to trade."""
    max_positions: PositiveInt = 10
    """The most positions (long and short together) held at once."""
    max_weight: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    """The largest weight of one position; equal weights above it are capped and the rest stays in cash."""
    allow_short: bool = False
    """Whether a short signal may open a short position (otherwise it only exits a long)."""

    @property
    def cost(self) -> float:
        """The one-way cost per unit of weight, as a fraction."""
        return self.cost_bps / BASIS_POINTS_PER_UNIT

    @property
    def threshold(self) -> float:
        """The threshold on the net predicted return, as a fraction."""
        return self.threshold_bps / BASIS_POINTS_PER_UNIT


@dataclass(frozen=True)
class RuleBacktest:
    """A strategy's backtest: one row per day (`DAILY_COLUMNS`) and its summary metrics (see `strategy_metrics`)."""

    daily: pd.DataFrame
    metrics: dict[str, Any]


@dataclass(frozen=True)
class StrategyComparison:
    """The rule on the model, the rule on a momentum signal and buy-and-hold, on the same days and tickers.

    `metrics` has one row per strategy (`strategy` then the metrics of `strategy_metrics`); `equity` has `date`
    and one column of end-of-day equity (starting from 1) per strategy.
    """

    metrics: pd.DataFrame
    equity: pd.DataFrame


def decide(
    predictions: pd.DataFrame, rule: DecisionRule, held: Collection[str] | Mapping[str, float] = ()
) -> pd.DataFrame:
    """Buy / sell / hold for one day's predictions, given what is held: the rule of the module docstring.

    `predictions` needs `ticker` and `predicted_return` (the batch table, or rows of the HTTP API's answer; other
    columns are passed through), one row per ticker. `held` lists the tickers held long, or maps tickers to their
    signed weights (negative = short, refused unless the rule allows shorts; only the sign matters). A held ticker
    without a prediction today (it stopped trading, or lacks history) is closed: there is nothing to hold it on,
    and a position dropped silently would neither be sold nor count against `max_positions`; its row has no
    prediction. Returns the input columns plus `net_return`, `action` and `target_weight` (signed), sorted by ticker.
    """
    require_columns(predictions, ["ticker", "predicted_return"], "predictions")
    duplicated = predictions["ticker"][predictions["ticker"].duplicated()]
    if len(duplicated):
        raise ValueError(f"predictions: column 'ticker' repeats {sorted(duplicated.unique())[:5]}; one row per ticker")
    decided = predictions.sort_values("ticker", ignore_index=True)
    predicted = pd.to_numeric(decided["predicted_return"], errors="coerce").astype(float)
    _require_finite(decided["ticker"], predicted, "predicted_return")
    directions = _held_directions(held)
    if not rule.allow_short and any(direction < 0 for direction in directions.values()):
        shorts = sorted(ticker for ticker, direction in directions.items() if direction < 0)
        raise ValueError(f"held: short positions in {shorts[:5]}, but the rule does not allow shorts")

    predicted = predicted.to_numpy()
    net = np.sign(predicted) * np.maximum(np.abs(predicted) - rule.cost, 0.0)
    held_direction = decided["ticker"].astype(str).map(directions).fillna(0.0).to_numpy(dtype=float)
    direction = _target_directions(net, held_direction, rule)
    n_positions = int(np.count_nonzero(direction))
    weight = min(1.0 / n_positions, rule.max_weight) if n_positions else 0.0
    decided = decided.assign(
        net_return=net,
        action=np.select([direction > held_direction, direction < held_direction], ["buy", "sell"], "hold"),
        target_weight=direction * weight,
    )
    unpredicted = sorted(set(directions) - set(decided["ticker"].astype(str)))
    if not unpredicted:
        return decided
    closed = pd.DataFrame(
        {
            "ticker": unpredicted,
            "action": ["sell" if directions[ticker] > 0 else "buy" for ticker in unpredicted],
            "target_weight": 0.0,
        }
    )
    return pd.concat([decided, closed], ignore_index=True).sort_values("ticker", ignore_index=True)


def _held_directions(held: Collection[str] | Mapping[str, float]) -> dict[str, float]:
    """+1 for each ticker held long, -1 for each held short."""
    if isinstance(held, Mapping):
        return {str(ticker): float(np.sign(weight)) for ticker, weight in held.items() if weight != 0}
    return dict.fromkeys(map(str, held), 1.0)


def _target_directions(net: np.ndarray, held: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """The direction (+1, -1 or 0) each ticker ends in: signals, then the position limit."""
    long_signal, short_signal = net > rule.threshold, net < -rule.threshold
    wanted = np.where(long_signal, 1.0, np.where(short_signal, -1.0 if rule.allow_short else 0.0, held))
    kept = (wanted != 0) & (wanted == held)
    # Priority: positions kept from yesterday first, then the strongest net return in the wanted direction.
    order = np.lexsort((-wanted * net, ~kept))
    candidates = order[wanted[order] != 0]
    direction = np.zeros_like(wanted)
    chosen = candidates[: rule.max_positions]
    direction[chosen] = wanted[chosen]
    return direction


def backtest_rule(predictions: pd.DataFrame, rule: DecisionRule) -> RuleBacktest:
    """The rule applied each day to walk-forward predictions, starting from the previous day's positions.

    `predictions` are `stockcast.train.backtest.backtest` rows (`date, ticker, close, next_close, predicted_return`;
    several folds allowed, one row per (date, ticker)). A held ticker missing on a day is closed that day.
    """
    rows = _backtest_rows(predictions, "predictions")
    return _simulate(rows, lambda day, held: decide(day, rule, held), rule.cost)


def compare_strategies(model_predictions: pd.DataFrame, rule: DecisionRule) -> StrategyComparison:
    """The rule on the model's walk-forward predictions against two references on the same days and tickers: the
    same rule on a momentum signal (``momentum_signal``: what a trader without a model would try first), and
    equal-weight buy-and-hold, long every ticker of the day at weight 1/n, rebalanced daily, charged the same cost.
    (The naive baseline is no reference here: it predicts no move, so the rule never trades on it.)"""
    model = _backtest_rows(model_predictions, "model predictions")
    backtests = {
        MODEL_RULE: _simulate(model, lambda day, held: decide(day, rule, held), rule.cost),
        MOMENTUM_RULE: _simulate(momentum_signal(model), lambda day, held: decide(day, rule, held), rule.cost),
        BUY_AND_HOLD: _simulate(model, lambda day, held: _equal_weights(day), rule.cost),
    }
    metrics = pd.DataFrame([{"strategy": name, **result.metrics} for name, result in backtests.items()])
    equity = pd.DataFrame({"date": backtests[MODEL_RULE].daily["date"]})
    for name, result in backtests.items():
        equity[name] = result.daily["equity"].to_numpy()
    return StrategyComparison(metrics=metrics, equity=equity)


def momentum_signal(rows: pd.DataFrame) -> pd.DataFrame:
    """Backtest rows whose predicted return is each ticker's last move, expected to go on: its close over its
    previous row's close, less one (0 on its first row, where there is no move yet). Known at the close of the day."""
    previous = rows.sort_values("date").groupby("ticker")["close"].shift(1)
    return rows.assign(predicted_return=(rows["close"] / previous.reindex(rows.index) - 1.0).fillna(0.0))


def _equal_weights(day: pd.DataFrame) -> pd.DataFrame:
    """Buy-and-hold's positions: long every ticker of the day with weight 1/n."""
    return day.assign(target_weight=1.0 / len(day))


def _simulate(
    rows: pd.DataFrame, positions: Callable[[pd.DataFrame, dict[str, float]], pd.DataFrame], cost: float
) -> RuleBacktest:
    """Run a strategy day by day: `positions(day_rows, held_weights)` returns the day's rows with
    `target_weight`; returns earned are next_close / close - 1, costs `cost` per unit of weight changed."""
    held: dict[str, float] = {}
    daily, position_returns, trades = [], [], 0
    for date, day in rows.groupby("date", sort=True):
        decided = positions(day, held)
        target = dict(zip(decided["ticker"], decided["target_weight"], strict=True))
        changes = [(held.get(ticker, 0.0), target.get(ticker, 0.0)) for ticker in sorted(set(target) | set(held))]
        turnover = sum(abs(after - before) for before, after in changes)
        trades += sum(np.sign(after) != np.sign(before) for before, after in changes)
        weight = decided["target_weight"].to_numpy(dtype=float)
        realised = (decided["next_close"] / decided["close"] - 1.0).to_numpy(dtype=float)
        active = weight != 0  # a closed position's row may have no prices (decide adds it when its ticker is gone)
        gross = float(weight[active] @ realised[active])
        daily.append(
            {
                "date": date,
                "gross_return": gross,
                "cost": cost * turnover,
                "net_return": gross - cost * turnover,
                "turnover": turnover,
                "n_positions": int(np.count_nonzero(weight)),
            }
        )
        position_returns.append(np.sign(weight[active]) * realised[active])
        held = {ticker: w for ticker, w in target.items() if w != 0}
    frame = pd.DataFrame(daily, columns=[c for c in DAILY_COLUMNS if c != "equity"])
    frame.insert(4, "equity", (1.0 + frame["net_return"]).cumprod())
    signed = np.concatenate(position_returns) if position_returns else np.array([])
    return RuleBacktest(daily=frame, metrics=strategy_metrics(frame, signed, trades=int(trades)))


def strategy_metrics(daily: pd.DataFrame, position_returns: np.ndarray, *, trades: int) -> dict[str, Any]:
    """Summary of a strategy's daily net returns (annualised over 252 trading days, risk-free rate 0).

    `cumulative_return` (final equity - 1), `annualised_return` (geometric), `annualised_volatility`, `sharpe`
    (mean over standard deviation of daily net returns, times sqrt(252); NaN when they do not vary, as for a
    strategy that never trades), `hit_rate` (share of position-days whose realised return has the position's
    sign: the return times the sign of the position is positive; NaN without positions), `mean_daily_turnover`,
    `max_drawdown` (the largest fall of equity from its running peak, as a positive fraction), `days` and `trades`
    (positions opened, closed or reversed). `position_returns` are realised returns times position signs.
    """
    days = len(daily)
    net = daily["net_return"].to_numpy(dtype=float)
    equity = np.r_[1.0, daily["equity"].to_numpy(dtype=float)]
    volatility = float(np.std(net, ddof=1)) if days > 1 else float("nan")
    has_spread = days > 1 and volatility > 1e-15
    return {
        "cumulative_return": float(equity[-1] - 1.0),
        "annualised_return": float(equity[-1] ** (TRADING_DAYS_PER_YEAR / days) - 1.0) if days else float("nan"),
        "annualised_volatility": float(volatility * np.sqrt(TRADING_DAYS_PER_YEAR)),
        "sharpe": float(net.mean() / volatility * np.sqrt(TRADING_DAYS_PER_YEAR)) if has_spread else float("nan"),
        "hit_rate": float(np.mean(position_returns > 0)) if len(position_returns) else float("nan"),
        "mean_daily_turnover": float(daily["turnover"].mean()) if days else float("nan"),
        "max_drawdown": float(np.max(1.0 - equity / np.maximum.accumulate(equity))),
        "days": days,
        "trades": trades,
    }


def _backtest_rows(predictions: pd.DataFrame, name: str) -> pd.DataFrame:
    """Checked walk-forward rows, sorted by (date, ticker): the columns a backtest needs, finite, one per key."""
    require_columns(predictions, BACKTEST_COLUMNS, name)
    rows = predictions[BACKTEST_COLUMNS].copy()
    rows["date"] = pd.to_datetime(rows["date"])
    repeated = rows[rows.duplicated(["date", "ticker"], keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise ValueError(
            f"{name}: {len(repeated)} rows repeat a (date, ticker), e.g. ({first['date']:%Y-%m-%d}, "
            f"{first['ticker']}); folds must not overlap"
        )
    for column in ["close", "next_close", "predicted_return"]:
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype(float)
        _require_finite(rows["ticker"], rows[column], column, name)
    return rows.sort_values(["date", "ticker"], ignore_index=True)


def _require_finite(tickers: pd.Series, values: pd.Series, column: str, name: str = "predictions") -> None:
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(
            f"{name}: column '{column}' is missing or not a finite number for {int(bad.sum())} rows, e.g. tickers "
            f"{sorted(map(str, tickers[bad].unique()))[:5]}"
        )


# --- BatchPredictFlow's decide step ---------------------------------------------------------------------------------


def decide_today(
    table: pd.DataFrame,
    model: ModelRecord,
    rule: DecisionRule,
    *,
    held: Mapping[str, float],
    branch: str,
    store: ObjectStore,
    service_url: str = "",
) -> Publication:
    """Buy / sell / hold on the day's published prediction table, given the positions ``held`` going into the day
    (ticker to signed weight: what the previous day's decisions left open); with ``service_url``, on the answers of
    the service deployed there instead (it must serve the same model, for the same day). The decisions are published
    once per day and model beside the predictions (``stockcast.operate.tables.publish_decisions``), and the table of
    record comes back: the one published first for that day and model."""
    as_of = pd.Timestamp(table["as_of"].max())
    predictions = table if not service_url else served_predictions(service_url, table["ticker"].tolist(), as_of, model)
    decided = decide(predictions, rule, held)
    return publish_decisions(decided, store, branch, as_of=as_of, model_version=model.version)


def served_predictions(service_url: str, tickers: list[str], as_of: pd.Timestamp, model: ModelRecord) -> pd.DataFrame:
    """The service's answers for ``tickers`` as of ``as_of``; refused (by the service, naming ``as_of``) when it serves
    another day, and here when it serves another model than ``model``."""
    with StockcastClient(service_url) as client:
        predictions = client.predict_table(tickers, as_of=as_of.date())
    served = set(predictions["model_version"])
    if served != {model.version}:
        raise ValueError(
            f"the service at {service_url} answers with model {sorted(served)}, not {model.version}: "
            "deploy the champion or drop --service"
        )
    return predictions


def walk_forward_predictions(model: ModelRecord) -> pd.DataFrame:
    """The model's walk-forward predictions, as its TrainFlow run recorded them."""
    return run_by_pathspec(model.run_pathspec).data.challenger_predictions


# --- MonitorFlow: the decisions' realised quality ------------------------------------------------------------------

QUALITY_COLUMNS = [
    "date",
    "n_positions",
    "hit_rate",
    "turnover",
    "net_return",
    "benchmark_return",
    "equity",
    "benchmark_equity",
    "drawdown",
]


def realised_decisions(
    decisions: pd.DataFrame,
    prices: pd.DataFrame,
    actions: pd.DataFrame | None,
    *,
    model_version: str,
    cost: float,
) -> pd.DataFrame:
    """What ``model_version``'s published decisions earned, one row per as-of ``date`` whose closes are known
    (``QUALITY_COLUMNS``): the positions held, the share of them whose realised move had their sign (hit rate), the
    turnover from the previous day's weights, the return net of ``cost`` per unit of turnover, beside it the return
    of an equal-weight basket of every ticker predicted that day (rebalanced daily, no costs: the market the rule
    picks from), both equity curves and the drawdown of the decisions' one. Returns are on the as-of day's share
    basis (a split in between is not a loss)."""
    mine = decisions[(decisions["model_version"] == model_version) & decisions["predicted_return"].notna()]
    if mine.empty:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    realised = join_realised(mine, prices, actions)
    if realised.empty:  # no close has followed them yet
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    realised = realised.assign(weight=realised["target_weight"].astype(float))
    weights = realised.pivot_table(index="as_of", columns="ticker", values="weight", fill_value=0.0).sort_index()
    turnover = weights.diff().abs().sum(axis=1)
    turnover.iloc[0] = weights.iloc[0].abs().sum()  # the first day's positions were all entered that day
    rows = []
    for day, group in realised.groupby("as_of", sort=True):
        held = group[group["weight"] != 0]
        gross = float((held["weight"] * held["realised_return"]).sum())
        rows.append(
            {
                "date": day,
                "n_positions": len(held),
                "hit_rate": float((np.sign(held["weight"]) == np.sign(held["realised_return"])).mean())
                if len(held)
                else float("nan"),
                "turnover": float(turnover.loc[day]),
                "net_return": gross - cost * float(turnover.loc[day]),
                "benchmark_return": float(group["realised_return"].mean()),
            }
        )
    quality = pd.DataFrame(rows)
    quality["equity"] = (1.0 + quality["net_return"]).cumprod()
    quality["benchmark_equity"] = (1.0 + quality["benchmark_return"]).cumprod()
    quality["drawdown"] = quality["equity"] / quality["equity"].cummax() - 1.0
    return quality[QUALITY_COLUMNS]

"""Published prediction tables: written once per day and model, read back per branch."""

from __future__ import annotations

import pandas as pd

from stockcast.operate.tables import (
    DECISION_COLUMNS,
    load_decisions,
    load_predictions,
    publish_decisions,
    publish_predictions,
)
from stockcast.serve.schema import TABLE_COLUMNS

TABLE = pd.DataFrame(
    {
        "ticker": ["AAA", "BBB"],
        "as_of": pd.to_datetime(["2024-12-31", "2024-12-31"]),
        "last_close": [10.0, 20.0],
        "predicted_return": [0.01, -0.02],
        "predicted_close": [10.1, 19.6],
        "model_version": ["v42", "v42"],
        "feature_fingerprint": ["f" * 16, "f" * 16],
        "data_version": ["snap-v2", "snap-v2"],
    }
)[TABLE_COLUMNS]


def test_a_table_is_published_once_per_day_and_model(store) -> None:
    table = TABLE
    assert load_predictions(store, "user.test").empty

    first = publish_predictions(table, store, "user.test")
    changed = table.assign(predicted_close=table["predicted_close"] + 1.0)
    again = publish_predictions(changed, store, "user.test")
    other_model = publish_predictions(table.assign(model_version="v43"), store, "user.test")

    assert first.written and not again.written and other_model.written
    assert first.url == again.url == store.url("predictions/user.test/2024-12-31/v42.csv")
    pd.testing.assert_frame_equal(again.table, table, check_dtype=False)  # the kept table, not the changed one
    loaded = load_predictions(store, "user.test")
    assert sorted(loaded["model_version"].unique()) == ["v42", "v43"]
    kept = loaded[loaded["model_version"] == "v42"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, table, check_dtype=False)  # the first table, not the changed one
    assert load_predictions(store, "user.other").empty


def test_a_days_decisions_are_published_once_with_the_day_and_model_on_every_row(store) -> None:
    decided = pd.concat(
        [
            TABLE.assign(net_return=[0.009, -0.019], action=["buy", "hold"], target_weight=[0.5, 0.0]),
            pd.DataFrame({"ticker": ["CCC"], "action": ["sell"], "target_weight": [0.0]}),  # closed: no prediction
        ],
        ignore_index=True,
    )
    as_of = pd.Timestamp("2024-12-31")

    first = publish_decisions(decided, store, "user.test", as_of=as_of, model_version="v42")
    again = publish_decisions(decided.assign(target_weight=1.0), store, "user.test", as_of=as_of, model_version="v42")

    assert first.written and not again.written
    assert first.url == store.url("decisions/user.test/2024-12-31/v42.csv")
    loaded = load_decisions(store, "user.test")
    assert list(loaded.columns) == DECISION_COLUMNS and loaded["target_weight"].tolist() == [0.5, 0.0, 0.0]
    assert (loaded["as_of"] == as_of).all() and (loaded["model_version"] == "v42").all()
    assert load_decisions(store, "user.other").empty
    served = decided.drop(columns="feature_fingerprint")  # decisions on a service's answers
    assert publish_decisions(served, store, "user.test", as_of=as_of, model_version="v43").written

"""The prediction schema: what one answer holds, and what a published prediction table holds.

Kept apart from the code that computes answers (which loads the model libraries), so that monitoring and the
published tables read the one schema without loading them.
"""

PREDICTION_COLUMNS = ["ticker", "as_of", "last_close", "predicted_return", "predicted_close", "model_version"]
"""One prediction: the predicted close of the trading day after ``as_of``, the close and return it starts from, and
the registry version of the model that made it. ``POST /predict`` answers with these fields."""

TABLE_COLUMNS = [*PREDICTION_COLUMNS, "feature_fingerprint", "data_version"]
"""A batch prediction table: the answers plus the feature-set and data versions behind them."""

"""The prediction schema: what one answer holds, and what a published prediction table holds.

Kept apart from the code that computes answers (which loads the model libraries), so that monitoring and the
published tables read the one schema without loading them.
"""

PREDICTION_FIELDS = ["ticker", "as_of", "last_close", "predicted_return", "predicted_close", "model_version"]
"""What a prediction says: the predicted close of the trading day after ``as_of``, the close and return it starts
from, and the registry version of the model that made it; what monitoring judges it on."""

PREDICTION_COLUMNS = [*PREDICTION_FIELDS, "data_version"]
"""One prediction, with the version of the data snapshot it was made from. ``POST /predict`` answers with these."""

TABLE_COLUMNS = [*PREDICTION_COLUMNS, "feature_fingerprint"]
"""A batch prediction table: the answers plus the version of the feature set behind them."""

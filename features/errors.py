"""The two ways a caller can ask the feature library for something it must refuse."""

from __future__ import annotations


class FeatureSetMismatch(ValueError):  # noqa: N818 - the public API names it so
    """Features are about to be built with a feature set other than the one the model was trained on.

    A model only understands the columns, windows and code it was trained with; serving it anything else gives
    silently wrong predictions, so the mismatch is an error that names both versions.
    """

    def __init__(self, *, expected: str, expected_name: str | None, actual: str, actual_name: str) -> None:
        self.expected = expected
        self.expected_name = expected_name
        self.actual = actual
        self.actual_name = actual_name
        expected_label = (
            f"feature set '{expected_name}'" if expected_name else "a feature set this code does not define"
        )
        super().__init__(
            f"feature-set fingerprint mismatch: the model expects {expected} ({expected_label}), "
            f"but features would be built with {actual} (feature set '{actual_name}'). "
            "Rebuild features with the model's feature set, or retrain the model."
        )


class InsufficientHistory(ValueError):  # noqa: N818 - the public API names it so
    """A supplied price history is shorter than the feature set's look-back (``min_history`` trading days)."""

    def __init__(self, *, ticker: str, required: int, supplied: int, feature_set_name: str) -> None:
        self.ticker = ticker
        self.required = required
        self.supplied = supplied
        self.feature_set_name = feature_set_name
        super().__init__(
            f"{ticker}: feature set '{feature_set_name}' needs at least {required} trading days of price "
            f"history, but {supplied} were supplied. Send the last {required} trading days (one row per day)."
        )

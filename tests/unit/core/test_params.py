"""Run-time flow parameters: a bad value is refused naming the parameter and the rule."""

from __future__ import annotations

import pandas as pd
import pytest

from stockcast.core.params import ParameterError, parse_fraction, parse_optional_date


def test_a_fraction_is_between_zero_and_one() -> None:
    assert parse_fraction("max-quarantined-fraction", 0.05) == 0.05
    assert parse_fraction("max-quarantined-fraction", 1) == 1.0
    with pytest.raises(ParameterError, match=r"--max-quarantined-fraction must be between 0 and 1, got 1\.5"):
        parse_fraction("max-quarantined-fraction", 1.5)
    with pytest.raises(ParameterError, match=r"got -0\.1"):
        parse_fraction("max-quarantined-fraction", -0.1)


def test_an_optional_date_is_empty_or_iso() -> None:
    assert parse_optional_date("today", "") is None
    assert parse_optional_date("today", "2025-12-31") == pd.Timestamp("2025-12-31")
    for text in ("31/12/2025", "2025-13-01", "tomorrow"):
        with pytest.raises(ParameterError, match=rf"--today must be a date as YYYY-MM-DD, got '{text}'"):
            parse_optional_date("today", text)

"""The daily loop's command line: what a day folder is."""

from __future__ import annotations

import pytest

from stockcast.operate import day_folder


@pytest.mark.parametrize("name", ["2025-13-01", "yesterday"])
def test_a_day_folder_must_be_named_after_its_day(tmp_path, name) -> None:
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(ValueError, match="named after its day as YYYY-MM-DD"):
        day_folder(folder)


def test_a_day_folder_needs_prices_and_may_lack_financials(tmp_path) -> None:
    folder = tmp_path / "2025-12-29"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"no stock_price\.csv in the day folder"):
        day_folder(folder)
    (folder / "stock_price.csv").write_text("date,ticker\n")
    assert day_folder(folder) == ("2025-12-29", str(folder / "stock_price.csv"), "")
    (folder / "financial_info.csv").write_text("ticker\n")
    assert day_folder(folder)[2] == str(folder / "financial_info.csv")

"""The daily loop's command line: what a day folder is, and its inputs checked before the first flow runs."""

from __future__ import annotations

import pytest

from stockcast.operate.loop import day_folder, main


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


def test_the_daily_loop_checks_its_configuration_before_the_first_day(tmp_path, capsys) -> None:
    day = tmp_path / "2025-12-29"
    day.mkdir()
    (day / "stock_price.csv").write_text("date,ticker,open,high,low,close,volume\n")
    bad = tmp_path / "operate.toml"
    bad.write_text("[monitor]\npsi_threshold = -1\n")

    assert main([str(day), "--operate-config", str(bad)]) == 1
    assert "monitor.psi_threshold" in capsys.readouterr().err
    assert main([str(day), "--train-config", str(tmp_path / "missing.toml")]) == 1
    assert "missing.toml" in capsys.readouterr().err

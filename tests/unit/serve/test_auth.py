"""Token settings: where the token comes from, which paths need it, how a header is judged, and the message of every
setting that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockcast.serve.auth import (
    PROTECT_METRICS_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    AuthConfigError,
    AuthSettings,
    read_token,
)

TOKEN = "s3cr3t-Token_value.42~+/=="


def test_no_variable_means_no_authentication() -> None:
    settings = AuthSettings.from_environment({})

    assert settings == AuthSettings(token=None, protect_metrics=False)
    assert not settings.enabled
    assert not settings.requires_token("/predict")
    assert settings.accepts(None)


def test_the_token_comes_from_the_variable_or_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")

    assert read_token({TOKEN_ENV: TOKEN}) == TOKEN
    assert read_token({TOKEN_ENV: f" {TOKEN}\n"}) == TOKEN
    assert read_token({TOKEN_FILE_ENV: str(token_file)}) == TOKEN
    assert read_token({TOKEN_ENV: ""}) is None


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({TOKEN_ENV: TOKEN, TOKEN_FILE_ENV: "/run/secrets/token"}, f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}, not both"),
        ({TOKEN_FILE_ENV: "/nonexistent/token"}, f"{TOKEN_FILE_ENV}=/nonexistent/token: cannot read the token: "),
        ({TOKEN_ENV: "two words"}, f"{TOKEN_ENV}: a bearer token holds only letters, digits and -._~+/ (then = signs)"),
        ({TOKEN_ENV: "tökén"}, f"{TOKEN_ENV}: a bearer token holds only letters"),
    ],
)
def test_a_token_setting_that_cannot_be_used_stops_the_server(environment: dict[str, str], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        read_token(environment)

    assert str(caught.value).startswith(message)


def test_an_empty_token_file_is_an_error_not_an_open_server(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")

    with pytest.raises(AuthConfigError, match=r"^STOCKCAST_API_TOKEN_FILE=.*token: the file is empty$"):
        read_token({TOKEN_FILE_ENV: str(token_file)})


@pytest.mark.parametrize(
    ("flag", "protected"), [("true", True), ("1", True), ("Yes", True), ("false", False), ("", False)]
)
def test_metrics_are_protected_when_told(flag: str, protected: bool) -> None:
    settings = AuthSettings.from_environment({TOKEN_ENV: TOKEN, PROTECT_METRICS_ENV: flag})

    assert settings.protect_metrics is protected
    assert settings.requires_token("/metrics") is protected


def test_a_flag_that_is_not_a_boolean_is_an_error() -> None:
    with pytest.raises(AuthConfigError, match=r"^STOCKCAST_PROTECT_METRICS='maybe': use true or false$"):
        AuthSettings.from_environment({PROTECT_METRICS_ENV: "maybe"})


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/predict", True),
        ("/predict_from_history", True),
        ("/model", True),
        ("/schema.json", True),  # any path not known to be open, a route added later included
        ("/predict/", True),
        ("/healthz", False),
        ("/livez", False),
        ("/readyz", False),
        ("/docs.json", False),
        ("/", False),
        ("/static_content/index.css", False),
        ("/metrics", False),
    ],
)
def test_every_path_needs_the_token_but_the_open_ones(path: str, required: bool) -> None:
    assert AuthSettings(token=TOKEN).requires_token(path) is required


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (f"Bearer {TOKEN}".encode(), True),
        (f"bearer {TOKEN}".encode(), True),  # the scheme is case-insensitive (RFC 7235)
        (f"Bearer  {TOKEN} ".encode(), True),
        (None, False),
        (b"", False),
        (b"Bearer", False),
        (b"Bearer wrong", False),
        (f"Bearer {TOKEN}x".encode(), False),
        (f"Basic {TOKEN}".encode(), False),
        (f"{TOKEN}".encode(), False),
        (b"Bearer \xff\xfe", False),
    ],
)
def test_a_header_is_accepted_only_with_the_bearer_scheme_and_the_token(header: bytes | None, accepted: bool) -> None:
    assert AuthSettings(token=TOKEN).accepts(header) is accepted


def test_the_token_is_never_shown() -> None:
    assert TOKEN not in repr(AuthSettings(token=TOKEN))

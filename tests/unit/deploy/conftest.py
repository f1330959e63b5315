"""What the roll-out tests share: nginx, which they run for real."""

from __future__ import annotations

import pytest

from stockcast.deploy.proxy import INSTALL_HINT, nginx_executable


@pytest.fixture
def nginx_installed() -> None:
    """Fails the test, saying how to install nginx, when it is missing."""
    if nginx_executable() is None:
        pytest.fail(f"nginx is missing: {INSTALL_HINT} (make test installs it where it may)")

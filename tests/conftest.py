"""Shared pytest wiring: the `--update-golden` switch and a private XDG cache for every test."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/* and tests/invalid/*.err from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run should rewrite expected files instead of comparing with them."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _private_cache(_session_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan caches go to a per-session temp dir, never the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))

"""Shared fixtures: the peers' reference data and one run of the DiD command on mpdta."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MPDTA = SHARED / "validation" / "mpdta" / "mpdta.csv"
MPDTA_ARGS = ["--unit", "countyreal", "--time", "year", "--cohort", "first.treat", "--outcome", "lemp",
              "--likelihood", "normal", "--label", "log teen employment", "--units", "log points",
              "--target", "-0.05", "--quiet"]


def _missing_message(paths, reason: str | None) -> str:
    names = ", ".join(str(p) for p in paths)
    return (reason + ": " if reason else "") + f"{names} not present (the shared data sit beside the repository)"


def needs_shared(*paths: Path, reason: str | None = None) -> pytest.MarkDecorator:
    """Mark for a test that needs files under ../shared: a skip when they are missing, a
    failure instead when the environment variable ``CI`` is set (the data must be there).

    >>> @needs_shared(SHARED / "validation" / "grm-environment")
    ... def test_uses_it(): ...
    """
    missing = [p for p in paths if not Path(p).exists()]
    if not missing:
        return pytest.mark.needs_shared()
    message = _missing_message(missing, reason)
    if os.environ.get("CI"):
        return pytest.mark.needs_shared(fail=message)
    return pytest.mark.skip(reason=message)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_shared: the test needs ../shared data (fails in CI when missing)")


def pytest_runtest_setup(item) -> None:
    for mark in item.iter_markers("needs_shared"):
        if mark.kwargs.get("fail"):
            pytest.fail(f"CI: {mark.kwargs['fail']}", pytrace=False)


def require_shared(path: Path) -> Path:
    """``path`` under ../shared, or a skip (a failure in CI, where the data must be present)."""
    if not path.exists():
        message = f"{path} is not present (the shared validation data sit beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mpdta_run(tmp_path_factory) -> Path:
    """``python -m analyses.did`` on R did's reference data with the defaults a user gets."""
    from analyses import did

    data = require_shared(MPDTA)
    out = tmp_path_factory.mktemp("mpdta") / "last"
    code = did.main(["--data", str(data), "--out", str(out), *MPDTA_ARGS, "--strict"])
    assert code == 0, f"mpdta: diagnostics failed (--strict exit {code})"
    return out

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

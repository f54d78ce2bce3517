"""What every runnable analysis shares: arguments, error handling, provenance, atomic output.

An analysis module is ``main(argv) -> int`` built from these pieces:

>>> parser = analysis_parser("kinship", __doc__)    # --data --prior --draws ... --strict
>>> return run_cli(lambda: _run(parser.parse_args(argv)))   # DataError -> exit 2

and writes everything through :class:`OutputDir`, which fills a temporary folder and renames
it into place only when the run succeeded, so a failed run leaves nothing half written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from data.errors import DataError
from data.hashing import hash_file, hash_frame  # noqa: F401  (re-exported for analyses)
from models.serialize import jsonable

EXIT_OK = 0
EXIT_DIAGNOSTICS = 1
EXIT_BAD_INPUT = 2

PACKAGES = (
    "numpy", "pandas", "scipy", "xarray", "pymc", "pytensor", "nutpie", "arviz",
    "arviz-base", "arviz-stats", "arviz-plots", "bambi", "statsmodels", "matplotlib",
)  # fmt: skip


def acceptance_rate(text: str) -> float:
    value = float(text)
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0.5, 1), got {text}")
    return value


def analysis_parser(name: str, description: str | None, *, priors: tuple[str, ...] = (),
                    target_accept: float | None = None) -> argparse.ArgumentParser:
    """The arguments every analysis takes; an analysis adds its own afterwards.

    ``target_accept``: the analysis samples with NUTS, and this is its default target
    acceptance rate (``--target-accept``, checked to lie in [0.5, 1)).
    """
    p = argparse.ArgumentParser(prog=f"python -m analyses.{name}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="your own data file (CSV or Parquet); default: the embedded synthetic data")
    if priors:
        p.add_argument("--prior", default="all", choices=[*priors, "all"],
                       help="named prior for the effect (default: all)")
        p.add_argument("--prior-override", action="append", default=[], metavar="NAME:MEAN:SD",
                       help="replace a named prior's mean and sd (effect scale; repeatable)")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    p.add_argument("--tune", type=int, default=1000, help="tuning draws per chain")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20201001)
    if target_accept is not None:
        p.add_argument("--target-accept", type=acceptance_rate, default=target_accept, metavar="P",
                       help=f"NUTS target acceptance rate (default {target_accept}; raise it if there are "
                            "divergences, lower it for faster sampling of large data sets)")
    p.add_argument("--out", type=Path, default=Path("results") / name, help="output folder")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when any sampling diagnostic fails")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def run_cli(body: Callable[[], int]) -> int:
    """Run an analysis body, turning bad input into a clear message and exit code 2."""
    try:
        return body()
    except DataError as err:
        print(f"error: bad input data: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(*, seed: int | None, data_hash: str, data_label: str, argv: list[str] | None = None,
               **extra: Any) -> dict[str, Any]:
    """What reproduces an output: package versions, seed, input hash, command line."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "seed": seed,
        "data": data_label,
        "data_hash": data_hash,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "packages": versions,
        **extra,
    }




class OutputDir:
    """An output folder written atomically.

    Files go to a temporary sibling folder; :meth:`commit` swaps it into place. Used as a
    context manager, an exception discards the temporary folder and leaves ``path`` untouched.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._done = False

    def __truediv__(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, obj: Any) -> Path:
        target = self.tmp / name
        target.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.tmp / name
        target.write_text(text)
        return target

    def write_table(self, stem: str, table: pd.DataFrame, *, floatfmt: str = ".3f") -> None:
        """The same table as ``stem.csv`` and ``stem.md``."""
        table.to_csv(self.tmp / f"{stem}.csv", index=False)
        (self.tmp / f"{stem}.md").write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n")

    def save_figure(self, name: str, fig: Any, *, dpi: int = 120) -> Path:
        import matplotlib.pyplot as plt

        target = self.tmp / name
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return target

    def commit(self) -> Path:
        """Move the finished folder into place (replacing an earlier run's folder)."""
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{self.tmp.name[-8:]}")
            self.path.rename(old)
        self.tmp.rename(self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.path

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "OutputDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.discard()


_START = time.perf_counter()


def log(message: str, *, quiet: bool = False) -> None:
    """Progress for long runs, on standard error so that stdout stays machine-readable; each line
    starts with the seconds since the process started (``[  12s]``)."""
    if not quiet:
        print(f"[{time.perf_counter() - _START:5.0f}s] {message}", file=sys.stderr, flush=True)



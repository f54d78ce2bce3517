"""What every runnable analysis shares: arguments, error handling, provenance, atomic output.

An analysis module is ``main(argv) -> int`` built from these pieces:

>>> parser = analysis_parser("kinship", __doc__)    # --data --prior --draws ... --strict
>>> return run_cli(lambda: _run(parser.parse_args(argv)))   # DataError -> exit 2

and writes everything through :class:`OutputDir`, which fills a temporary folder and renames
it into place only when the run succeeded, so a failed run leaves nothing half written.

Interruption: :func:`run_cli` turns Ctrl-C (SIGINT) and SIGTERM into one line on standard
error saying the run was interrupted and what was (not) written, and exit code 130 or 143
(128 + the signal's number), never a traceback. The signals raise :class:`Interrupted`, which
is not a ``KeyboardInterrupt``, so no library on the way (nutpie returns a partial trace on
``KeyboardInterrupt``) can swallow it and carry on with half a posterior.

Concurrency: an :class:`OutputDir` holds an exclusive lock (``.<name>.lock`` beside the
folder, ``fcntl.flock``, released by the kernel if the process dies) from its creation to its
commit; a second run writing the same ``--out`` meanwhile fails cleanly (:class:`OutputBusy`,
exit code 75) and the folder holds one complete run, never a mix.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
EXIT_BUSY = 75          # EX_TEMPFAIL (sysexits.h): another run is writing the same output folder
EXIT_INTERRUPTED = 128 + signal.SIGINT      # 130, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM      # 143

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
                    target_accept: float | None = None, mass_matrix: str | None = None) -> argparse.ArgumentParser:
    """The arguments every analysis takes; an analysis adds its own afterwards.

    ``target_accept``: the analysis samples with NUTS, and this is its default target
    acceptance rate (``--target-accept``, checked to lie in [0.5, 1)). ``mass_matrix``: its
    default NUTS mass-matrix adaptation (``--mass-matrix``, one of
    :data:`models.sampling.MASS_MATRICES`).
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
    if mass_matrix is not None:
        from models.sampling import MASS_MATRICES
        p.add_argument("--mass-matrix", choices=MASS_MATRICES, default=mass_matrix,
                       help=f"NUTS mass-matrix adaptation (nutpie's; default {mass_matrix}): 'diag' is a diagonal, "
                            "'low_rank' adds the directions in which the posterior is most correlated")
    p.add_argument("--out", type=Path, default=Path("results") / name, help="output folder")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when any sampling diagnostic fails")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--keep-draws", action="store_true",
                   help="save every posterior- and prior-predictive draw and the warm-up draws (default: "
                        "predictive draws thinned to 200 beside per-cell summaries over all draws; the "
                        "posterior, log-likelihood and sample statistics are always kept in full)")
    return p


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the run stops, its temporary output folder is discarded.

    A ``BaseException`` but not a ``KeyboardInterrupt``: libraries that catch
    ``KeyboardInterrupt`` to return partial results (nutpie's sampler) let it through.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class OutputBusy(RuntimeError):
    """Another run holds the lock of the output folder this run wants to write."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    # ignore a second Ctrl-C while the first one unwinds (it would interrupt the clean-up)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _interrupted_message(err: BaseException) -> tuple[str, int]:
    signum = err.signum if isinstance(err, Interrupted) else int(signal.SIGINT)
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    written = [str(p) for p in _COMMITTED]
    if written:
        what = f"the outputs in {', '.join(written)} were complete before it stopped"
    else:
        what = "nothing was written" + (f" ({', '.join(map(str, _TOUCHED))} left as it was)" if _TOUCHED else "")
    return f"interrupted by {name}: the run was stopped; {what}", 128 + signum


def run_cli(body: Callable[[], int]) -> int:
    """Run an analysis body: bad input -> a clear message and exit code 2; SIGINT / SIGTERM ->
    one line and exit code 130 / 143 with nothing written; a busy output folder -> exit 75."""
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, _raise_interrupted)
    _COMMITTED.clear()
    _TOUCHED.clear()
    try:
        return body()
    except DataError as err:
        print(f"error: bad input data: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BUSY
    except (Interrupted, KeyboardInterrupt) as err:
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)
        message, code = _interrupted_message(err)
        sys.stderr.flush()
        print(message, file=sys.stderr, flush=True)
        return code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


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




#: output folders this process committed / set out to write (for the interruption message)
_COMMITTED: list[Path] = []
_TOUCHED: list[Path] = []


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM held back (delivered afterwards) while a folder is swapped into place."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class OutputLock:
    """An exclusive, non-blocking lock on an output folder: ``.<name>.lock`` beside it.

    ``fcntl.flock`` locks die with their process, so a killed run leaves no stale lock. The
    file is removed on release; a run that opened it just before then re-checks that the file
    it locked is still the one on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputBusy(f"another run is writing to {self.path} (lock {self.file} is held); "
                                     "nothing was written: wait for it to finish or choose another --out") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)            # the holder removed it as we opened it: try again

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.file)
        os.close(self._fd)
        self._fd = None


class OutputDir:
    """An output folder written atomically, by one run at a time.

    Files go to a temporary sibling folder; :meth:`commit` swaps it into place. Used as a
    context manager, an exception (or an interruption: :class:`Interrupted`) discards the
    temporary folder and leaves ``path`` untouched. From creation to commit the folder's
    :class:`OutputLock` is held, so a concurrent run on the same ``path`` gets
    :class:`OutputBusy` instead of racing this one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = OutputLock(self.path).acquire()
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        except BaseException:
            self.lock.release()
            raise
        self._done = False
        _TOUCHED.append(self.path)

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
        """Move the finished folder into place (replacing an earlier run's folder); signals
        arriving meanwhile are held until the swap is complete."""
        with _signals_held():
            old = None
            if self.path.exists():
                old = self.path.with_name(f".{self.path.name}.old-{self.tmp.name[-8:]}")
                self.path.rename(old)
            self.tmp.rename(self.path)
            self._done = True
            _COMMITTED.append(self.path)
            with contextlib.suppress(ValueError):
                _TOUCHED.remove(self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.lock.release()
        return self.path

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.lock.release()

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



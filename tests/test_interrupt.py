"""Ctrl-C / SIGTERM during a run, and two runs writing one output folder (issue 22, item 2).

Real signals on a real command: ``python -m analyses.kinship`` is started in a subprocess, the
signal is sent once it has started sampling, and the test checks the exit code (130 for
SIGINT, 143 for SIGTERM), the one-line message, that no traceback was printed and that the
output folder is as it was (absent here; unchanged when it held an earlier run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analyses.common import (EXIT_BUSY, EXIT_INTERRUPTED, EXIT_TERMINATED, Interrupted, OutputBusy, OutputDir,
                             run_cli)

ROOT = Path(__file__).resolve().parents[1]
ARGV = ["--draws", "3000", "--tune", "3000", "--chains", "2", "--prior", "neutral", "--no-robustness"]
TRACEBACK_WORDS = ("Traceback", "File \"", "KeyboardInterrupt", "Exception ignored")


def _interrupt(tmp_path: Path, sig: int, *, out: Path) -> tuple[int, str]:
    """Start a kinship run, send ``sig`` once it is sampling; (exit code, standard error)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "analyses.kinship", *ARGV, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "sampling under" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(240), "the run never started sampling:\n" + "".join(lines)
        time.sleep(1.5)                       # inside nutpie's sampler (Rust threads) by now
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(sig)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return code, "".join(lines)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)])
def test_a_signal_while_sampling_stops_cleanly(tmp_path, sig, code):
    out = tmp_path / "kinship"
    got, err = _interrupt(tmp_path, sig, out=out)
    assert got == code, err
    assert (got, code) in ((130, 130), (143, 143))
    tail = err.strip().splitlines()
    assert tail[-1].startswith("interrupted by ") and "nothing was written" in tail[-1], err
    assert sum(line.startswith("interrupted") for line in tail) == 1
    for word in TRACEBACK_WORDS:
        assert word not in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []          # no temporary folder, no lock file left


def test_an_earlier_run_survives_an_interrupted_one(tmp_path):
    out = tmp_path / "kinship"
    out.mkdir()
    (out / "statements.json").write_text("{\"earlier\": true}\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    got, err = _interrupt(tmp_path, signal.SIGINT, out=out)
    assert got == EXIT_INTERRUPTED, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kinship"]


def test_run_cli_maps_interruptions_to_130_and_143(capsys):
    # the handlers in place before (a pytest-xdist worker may ignore SIGINT) must be restored
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def body(sig):
        def run() -> int:
            raise Interrupted(sig)
        return run
    assert run_cli(body(signal.SIGINT)) == 130
    assert run_cli(body(signal.SIGTERM)) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("interrupted by") for e in err)

    def keyboard() -> int:
        raise KeyboardInterrupt
    assert run_cli(keyboard) == 130
    assert {sig: signal.getsignal(sig) for sig in before} == before     # handlers restored


def test_two_writers_of_one_folder_the_second_fails_cleanly(tmp_path, capsys):
    target = tmp_path / "out"
    first = OutputDir(target)
    first.write_text("a.txt", "first")
    with pytest.raises(OutputBusy, match="another run is writing"):
        OutputDir(target)

    def second() -> int:
        with OutputDir(target) as out:
            out.write_text("b.txt", "second")
            out.commit()
        return 0
    assert run_cli(second) == EXIT_BUSY
    assert "another run is writing" in capsys.readouterr().err
    first.commit()
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]        # one complete run, not a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]        # lock released, file removed
    with OutputDir(target) as out:                                      # and the folder is free again
        out.write_text("c.txt", "third")
        out.commit()
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]


def test_two_processes_writing_one_folder_never_mix(tmp_path):
    """Two processes write the same folder at once, file by file with pauses: each attempt
    either commits a complete set of its own files or exits 75 having written nothing."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from analyses.common import OutputDir, run_cli\n"
        "Path(sys.argv[3], 'ready_' + sys.argv[2]).touch()\n"
        "while not Path(sys.argv[3], 'go').exists(): time.sleep(0.01)\n"
        "def body():\n"
        "    with OutputDir(sys.argv[1]) as out:\n"
        "        for i in range(5):\n"
        "            out.write_text(f'{sys.argv[2]}_{i}.txt', sys.argv[2]); time.sleep(0.2)\n"
        "        out.commit()\n"
        "    return 0\n"
        "raise SystemExit(run_cli(body))\n")
    target = tmp_path / "shared_out"
    sync = tmp_path.parent / f"{tmp_path.name}_sync"
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), tag, str(sync)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    deadline = time.monotonic() + 120
    while not all((sync / f"ready_{t}").exists() for t in "ab") and time.monotonic() < deadline:
        time.sleep(0.02)
    (sync / "go").touch()                       # both start writing at the same moment
    codes = [p.wait(60) for p in procs]
    assert sorted(codes) == [0, EXIT_BUSY], [p.stderr.read() for p in procs]
    winner = "ab"[codes.index(0)]
    assert sorted(p.name for p in target.iterdir()) == [f"{winner}_{i}.txt" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared_out"]

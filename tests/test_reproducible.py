"""Reproducibility (issue 22, item 4): the same command and seed twice give the same
``statements.json`` apart from its timestamps.

Each command runs twice in fresh processes (with different ``PYTHONHASHSEED``s, so that an
output depending on set or dict order of strings would differ) on the same ``--out`` path
(the command line recorded in the provenance is then the same), with small draws. The
default run covers the commands that are quick at small draws; ``-m slow`` covers the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MPDTA, MPDTA_ARGS, require_shared

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--draws", "40", "--tune", "60", "--chains", "2", "--seed", "11", "--quiet"]
TIMESTAMP_KEYS = {"created_at", "timestamp", "started_at", "finished_at", "wall_s", "elapsed_s", "seconds",
                  "timings"}      # wall-clock times of each step (analyses.published)
slow = pytest.mark.slow

CASES = [
    pytest.param("kinship", ["--prior", "neutral", "--no-robustness"], id="kinship"),
    pytest.param("costs", ["--draws", "200"], id="costs"),          # it needs 100 draws or more
    pytest.param("rereferral", ["--prior", "neutral", "--robustness-chains", "1"], id="rereferral", marks=slow),
    pytest.param("escalation", ["--prior", "neutral"], id="escalation", marks=slow),
    pytest.param("duration", ["--prior", "neutral"], id="duration", marks=slow),
    pytest.param("did", ["--prior", "neutral", "--data", "{MPDTA}", *MPDTA_ARGS], id="did", marks=slow),
    pytest.param("engagement", ["--prior", "neutral"], id="engagement", marks=slow),
    pytest.param("la_panel", ["--prior", "neutral"], id="la_panel", marks=slow),
    pytest.param("published", [], id="published", marks=slow),
]


def strip_times(obj):
    """``obj`` without timestamp-like keys (at any depth)."""
    if isinstance(obj, dict):
        return {k: strip_times(v) for k, v in obj.items() if k not in TIMESTAMP_KEYS}
    if isinstance(obj, list):
        return [strip_times(v) for v in obj]
    return obj


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one run" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}/{i}")]
    return [] if a == b else [f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}"]


def _run(module: str, extra: list[str], out: Path, hashseed: str) -> dict:
    if "{MPDTA}" in extra:
        extra = [str(require_shared(MPDTA)) if a == "{MPDTA}" else a for a in extra]
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    proc = subprocess.run([sys.executable, "-m", f"analyses.{module}", *SMALL, *extra, "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode in (0, 1), f"{module}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    found = sorted(out.rglob("statements.json")) or sorted(out.rglob("*.json"))
    assert found, f"{module}: no statements.json in {out}"
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in found}


@pytest.mark.parametrize("module, extra", CASES)
def test_same_command_and_seed_give_the_same_statements(tmp_path, module, extra):
    out = tmp_path / module
    first = _run(module, extra, out, "1")
    shutil.move(out, tmp_path / "first")
    second = _run(module, extra, out, "2")
    assert set(first) == set(second)
    for name in first:
        a, b = strip_times(first[name]), strip_times(second[name])
        diff = differences(a, b)
        assert not diff, f"{module} {name}: {len(diff)} differences:\n" + "\n".join(diff[:20])
        assert a == b


def test_the_comparison_can_fail():
    a = {"provenance": {"created_at": "2026-01-01T00:00:00"}, "results": [{"mean": 1.0}]}
    b = {"provenance": {"created_at": "2026-01-02T00:00:00"}, "results": [{"mean": 1.0}]}
    assert strip_times(a) == strip_times(b)
    b["results"][0]["mean"] = 1.0000001
    assert differences(strip_times(a), strip_times(b)) == ["/results/0/mean: '1.0' != '1.0000001'"]


_DRAWS_SCRIPT = """
import sys
import numpy as np
from models.sampling import CompiledSampler
from models.table7_placebo import build_focal
from tests.test_table7 import _untreated_share_cells

model, _ = build_focal(_untreated_share_cells(np.random.default_rng(5)))
idata = CompiledSampler(model, mutable=None).sample(None, draws=50, tune=50, chains=2, seed=3)
np.save(sys.argv[1], idata["posterior"]["tau"].values)
"""


def test_a_cold_and_a_warm_compile_cache_give_the_same_draws(tmp_path):
    """The first run on a machine compiles afresh, later runs load PyTensor's numba cache; with
    fast-math on, the two gave draws that differed by 1e-8 after 100 iterations (and kinship
    statements that differed). ``models`` turns fast-math off, so the draws are bit-identical."""
    import numpy as np

    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}"}
    for k in (0, 1):   # 0: empty cache; 1: the cache the first run wrote
        proc = subprocess.run([sys.executable, "-c", _DRAWS_SCRIPT, str(tmp_path / f"tau{k}.npy")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "tau0.npy"), np.load(tmp_path / "tau1.npy"))


@pytest.mark.parametrize("flags, rc, expected", [
    ("", "", "False"),                                    # nobody names it: models turns it off
    ("numba__fastmath=True", "", "True"),                 # PYTENSOR_FLAGS names it
    ("", "[numba]\nfastmath = True\n", "True"),           # a config file names it
    ("", "[numba]\nfastmath = False\n", "False"),
])
def test_models_turns_fast_math_off_unless_the_user_sets_it(tmp_path, flags, rc, expected):
    """``import models`` turns fast-math off, but a user's own setting, in PYTENSOR_FLAGS or in
    a PyTensor config file, is left alone (it was overridden silently when set in a file)."""
    pytensorrc = tmp_path / "pytensorrc"
    pytensorrc.write_text(rc)
    env = {**os.environ, "PYTENSOR_FLAGS": flags, "PYTENSORRC": str(pytensorrc)}
    proc = subprocess.run([sys.executable, "-c", "import models, pytensor; print(pytensor.config.numba__fastmath)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == expected

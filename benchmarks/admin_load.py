"""Benchmark: loading SSDA903 (and CIN census) files and deriving the DiD outcomes (issue 8).

Figure of merit: 1,000,000 SSDA903 episodes loaded, validated and turned into the child-level
kinship frame in <= 60 s and <= 4 GB on 2 cores.

1. Synthetic files are written first (not timed as loading): ``writer.write_ssda903`` on a study
   sized for about ``--episodes`` distinct episodes, one folder per collection year (records open
   across a year end repeat in the next return, as in real extracts, so the files hold more rows
   than distinct episodes). The CIN census part writes about ``--cin-rows`` event rows.
2. Each load runs in a fresh subprocess pinned to 2 cores; it reports its wall time and peak
   resident memory (``ru_maxrss``), so the writer's memory is not counted.

    uv run python benchmarks/admin_load.py                  # 1M episodes + ~1M CIN rows
    uv run python benchmarks/admin_load.py --episodes 100000 --cin-rows 0

Results are printed and written to benchmarks/results/admin_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S, TARGET_GB = 60.0, 4.0


def _study(children: int, outcome: str, seed: int):
    from data.synthetic import DidStudyConfig, simulate_did_study

    per_la_year = children / (18 * 9)
    cfg = DidStudyConfig(outcome=outcome, children_per_la_year=per_la_year, la_size_sd=0.0,
                         baseline_share=0.67 if outcome == "kinship" else 0.31)
    return simulate_did_study(cfg, seed=seed)


def generate(folder: Path, episodes: int, cin_rows: int) -> dict:
    from data.admin import writer

    info = {}
    if episodes:
        t0 = time.perf_counter()
        study = _study(int(episodes / 2.5), "kinship", 1)         # about 2.5 episodes per period of care
        files = writer.write_ssda903(study.children, folder / "s903", seed=2)
        rows = sum(sum(1 for _ in open(p)) - 1 for p in files.root.rglob("episodes.csv"))
        info["ssda903"] = {"distinct_episodes": len(files.episodes), "episode_rows_in_files": rows,
                           "periods_of_care": len(files.expected), "write_s": round(time.perf_counter() - t0, 1),
                           "root": str(files.root), "roles": str(files.roles_path)}
    if cin_rows:
        t0 = time.perf_counter()
        from data.synthetic import DidStudyConfig

        cin_study = writer.simulate_cin_study(seed=3, config=DidStudyConfig(
            outcome="rereferral", baseline_share=0.31, children_per_la_year=cin_rows / 2.9 / 162, la_size_sd=0.0))
        cfiles = writer.write_cin(cin_study.children, folder / "cin", seed=4, layout="single")
        info["cin"] = {"event_rows": len(cfiles.events), "index_referrals": len(cfiles.expected),
                       "write_s": round(time.perf_counter() - t0, 1), "path": str(cfiles.path),
                       "roles": str(cfiles.roles_path)}
    return info


def load(kind: str, path: str, roles: str) -> None:
    """Child process: load + validate + derive; print JSON with wall time and peak memory."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    t0 = time.perf_counter()
    from data.admin import cin, ssda903
    from data.admin.roles import load_roles

    t_import = time.perf_counter() - t0
    roles_ = load_roles(Path(roles))
    out = {}
    if kind == "ssda903":
        t1 = time.perf_counter()
        data = ssda903.read_ssda903(Path(path))
        t2 = time.perf_counter()
        frame, dropped = ssda903.kinship_frame(data, roles_)
        t3 = time.perf_counter()
        out = {"read_validate_s": round(t2 - t1, 1), "derive_s": round(t3 - t2, 1), "records": len(frame),
               "episodes_after_dedup": len(data.episodes)}
    else:
        t1 = time.perf_counter()
        data = cin.read_cin(Path(path))
        t2 = time.perf_counter()
        sizes = {}
        for outcome in ("rereferral", "escalation", "assessment_days"):
            frame, _ = cin.cin_frame(data, roles_, outcome)
            sizes[outcome] = len(frame)
        t3 = time.perf_counter()
        out = {"read_validate_s": round(t2 - t1, 1), "derive_3_outcomes_s": round(t3 - t2, 1), "records": sizes}
    out["import_s"] = round(t_import, 1)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
    out["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(json.dumps(out))


def measure(kind: str, path: str, roles: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--load", kind, path, roles], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["subprocess_wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1_000_000)
    p.add_argument("--cin-rows", type=int, default=1_000_000)
    p.add_argument("--load", nargs=3, metavar=("KIND", "PATH", "ROLES"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load:
        load(*args.load)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        info = generate(Path(tmp), args.episodes, args.cin_rows)
        results = {"files": info}
        if "ssda903" in info:
            results["ssda903"] = measure("ssda903", info["ssda903"]["root"], info["ssda903"]["roles"])
        if "cin" in info:
            results["cin"] = measure("cin", info["cin"]["path"], info["cin"]["roles"])
    s = results.get("ssda903")
    if s:
        results["target"] = {"wall_s_max": TARGET_S, "peak_gb_max": TARGET_GB,
                             "met": s["wall_s"] <= TARGET_S and s["peak_rss_gb"] <= TARGET_GB}
    results["load_average_1min"] = os.getloadavg()[0]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "admin_load.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the cost model at the command's default 20,000 draws x 9 LAs: draws and
evaluation, one-way table, EVPPI with SE (every parameter and the groups), CEAC, and the EVSI of a
new trial on a grid of 10 trial sizes (issue 19 target: the whole command with EVSI <= 60 s on
2 cores).

    uv run python benchmarks/costs.py --cli --record   # also the whole command; write the JSON

Prints one line per step and a JSON record (benchmarks/results/costs.json with --record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data.cost_inputs import load_unit_costs  # noqa: E402
from models import cost_uncertainty as cu  # noqa: E402


def timed(label: str, record: dict, fn):
    t0 = time.perf_counter()
    out = fn()
    record[label] = round(time.perf_counter() - t0, 3)
    print(f"{label:<48s} {record[label]:8.2f} s", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=20_000)
    p.add_argument("--record", action="store_true", help="write benchmarks/results/costs.json")
    p.add_argument("--seed", type=int, default=20201001)
    p.add_argument("--cli", action="store_true", help="also time `python -m analyses.costs` end to end")
    args = p.parse_args()
    n = args.draws
    rec: dict = {"draws": n, "las": 9, "cpus": os.cpu_count(), "python": platform.python_version()}
    settings = cu.CostSettings()
    costs = load_unit_costs()

    def model():
        effects = {o: cu.published_effect_draws(o, n, args.seed) for o in ("kinship", "rereferral")}
        draws = cu.sample_parameters(costs, effects=effects, n_draws=n, seed=args.seed, settings=settings)
        outcomes = {r: cu.evaluate(draws, settings, discount_rate=r) for r in settings.rates}
        tables = [cu.by_la_table(o) for o in outcomes.values()]
        return draws, outcomes, tables

    draws, outcomes, _ = timed("draw + evaluate (2 rates) + per-LA tables", rec, model)
    draws = timed("  of which: sample_parameters", rec, lambda: cu.sample_parameters(
        costs, effects={o: cu.published_effect_draws(o, n, args.seed) for o in ("kinship", "rereferral")},
        n_draws=n, seed=args.seed, settings=settings))
    timed("  of which: evaluate (one rate)", rec, lambda: cu.evaluate(draws, settings))
    main_outcomes = outcomes[settings.discount_rate]
    timed("tornado (all parameter groups)", rec, lambda: cu.one_way(draws, settings))
    ten = cu.PARAMETER_GROUPS[:10]
    table10 = timed("EVPPI + SE, 10 parameters", rec,
                    lambda: cu.evppi_table(draws, main_outcomes, groups=ten, multi={}))
    table = timed(f"EVPPI + SE, all {len(cu.PARAMETER_GROUPS)} parameters and {len(cu.EVPPI_GROUPS)} groups", rec,
                  lambda: cu.evppi_table(draws, main_outcomes))
    timed("CEAC (21 x 21 willingness-to-pay grid)", rec, lambda: cu.ceac_table(main_outcomes))
    effects = {o: cu.published_effect_draws(o, n, args.seed) for o in ("kinship", "rereferral")}
    evsi = timed(f"EVSI, {len(cu.DEFAULT_TRIAL_SIZES)} trial sizes (+ k = inf)", rec,
                 lambda: cu.evsi_trial(draws, settings, effects))
    timed("analyse() with EVSI (everything above, both rates)", rec,
          lambda: cu.analyse(draws, settings, effects=effects, trial=cu.TrialDesign()))
    net = main_outcomes.total("net")
    rec["p_saves_money"] = float(np.mean(net < 0))
    rec["evpi"] = float(table.attrs["evpi"])
    rec["evppi_top"] = table.head(3)[["parameter", "evppi"]].to_dict(orient="records")
    rec["evppi10_rows"] = len(table10)
    rec["evppi_table"] = table[["parameter", "evppi", "se", "noise_floor", "above_noise_floor"]].head(6).to_dict(
        orient="records")
    rec["evsi"] = evsi[["k", "evsi", "se", "trial_cost", "enbs"]].replace([np.inf], -1).to_dict(orient="records")
    rec["evsi_attrs"] = {k: v for k, v in evsi.attrs.items() if k != "effect_sources"}
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "analyses.costs", "--draws", str(n), "--out", str(Path(tmp) / "c"), "--quiet"]
            timed("python -m analyses.costs (whole command, EVSI on 10 sizes)", rec,
                  lambda: subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1]))
    rec["load_average_1min_at_end"] = os.getloadavg()[0]
    text = json.dumps(rec, indent=1, default=float)
    print(text)
    if args.record:
        out = Path(__file__).resolve().parent / "results" / "costs.json"
        out.write_text(text + "\n")
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

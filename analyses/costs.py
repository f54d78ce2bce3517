"""Monte Carlo cost model: how likely is it that Signs of Safety saves money?

Carries the uncertainty in the pilots' implementation costs (RR1054 'Cost benefit') and in the
DiD effects on kinship care and re-referral (posterior draws from this toolkit's analyses, or a
normal approximation to the published estimates) into per-LA and total net costs.

Examples
--------
  python -m analyses.costs                                   # published estimates, default table
  python -m analyses.costs --kinship-posterior results/kinship/posterior_sceptical.nc
  python -m analyses.costs --data my_unit_costs.csv --price-year 2023 --horizon-years 10

Writes to --out (default results/costs): summary.json, net_cost_by_la.{csv,md}, tornado.{csv,md},
evppi.{csv,md}, inputs.{csv,md}, cost_distribution.png, tornado.png, evppi.png,
cost_effect_plane.png (and draws.nc with --save-draws).
"""

from __future__ import annotations

import hashlib
import json

from pathlib import Path

import numpy as np
import pandas as pd

from analyses.common import (
    EXIT_DIAGNOSTICS,
    EXIT_OK,
    OutputDir,
    analysis_parser,
    hash_file,
    log,
    provenance,
    run_cli,
)
from data.cost_inputs import (
    DEFAULT_UNIT_COSTS,
    DEFLATOR,
    DEFLATOR_SOURCE,
    INPUTS,
    PUBLISHED_EFFECTS,
    REPORT_COST_VERDICT,
    load_deflator,
    load_effect_draws,
    load_la_volumes,
    load_unit_costs,
    unit_costs_frame,
)
from models import cost_uncertainty as cu
from models.statements import state

DEFAULT_DRAWS = 20_000


def build_parser():
    p = analysis_parser("costs", __doc__)
    for action in p._actions:  # re-word the shared options for a Monte Carlo (not MCMC) analysis
        if action.dest == "data":
            action.help = f"unit-cost table, CSV or YAML (default: {DEFAULT_UNIT_COSTS.name} in data/)"
        elif action.dest == "draws":
            action.default = DEFAULT_DRAWS
            action.help = f"Monte Carlo draws (default {DEFAULT_DRAWS:,})"
        elif action.dest in ("tune", "chains"):
            action.help = "not used by this analysis (no MCMC here)"
        elif action.dest == "strict":
            action.help = "exit with status 1 when a posterior file's sampling diagnostics fail"
    p.add_argument("--kinship-posterior", type=Path, default=None, metavar="PATH",
                   help="ArviZ netCDF with posterior variable att (the ATT in pp of kinship care), e.g. "
                        "results/kinship/posterior_neutral.nc; default: published estimate -12.63 pp (p = 0.03)")
    p.add_argument("--rereferral-posterior", type=Path, default=None, metavar="PATH",
                   help="ArviZ netCDF with posterior variable att (the ATT in pp of re-referral within 6 months); "
                        "default: published estimate -9.8 pp (p = 0.001)")
    p.add_argument("--price-year", type=int, default=2019,
                   help="financial year of the prices reported (2019 = 2019-20; default 2019)")
    p.add_argument("--horizon-years", type=int, default=5,
                   help="years counted, including the 2 grant years (default 5)")
    p.add_argument("--discount-rate", type=float, default=0.035, help="main discount rate (default 0.035)")
    p.add_argument("--sensitivity-rate", type=float, default=0.015, help="sensitivity discount rate (default 0.015)")
    p.add_argument("--unknown-internal", default="mixture", choices=cu.UNKNOWN_INTERNAL,
                   help="internal funding of the 2 pilots that did not report it (default: mixture = like the 7 "
                        "that did: none with probability 2/7, else 37%%-108%% of the grant)")
    p.add_argument("--la-volumes", type=Path, default=None, metavar="CSV",
                   help="your LAs: columns la and optional children_entering_care, closed_cases (per year), "
                        "internal_share (of the grant); blanks use the default distributions")
    p.add_argument("--deflator", type=Path, default=None, metavar="CSV",
                   help="price index to use instead of the embedded GDP deflator (columns year,index)")
    p.add_argument("--evppi-knots", type=int, default=6, help="interior knots of the EVPPI regression spline")
    p.add_argument("--save-draws", action="store_true", help="also write every parameter draw to draws.nc")
    return p


def _m(x: float) -> str:
    """GBP millions with the sign before the pound sign."""
    return f"{'-' if x < 0 else ''}£{abs(x) / 1e6:,.2f}m"


def _combined_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(hash_file(path).encode())
    return "sha256:" + h.hexdigest()


def _inputs_table(unit_costs, settings: cu.CostSettings) -> pd.DataFrame:
    uc = unit_costs_frame(unit_costs)
    uc.insert(0, "kind", ["assumption" if s.upper().startswith("ASSUMPTION") else "report / published source"
                          for s in uc["source"]])
    uc["inflator_to_price_year"] = [settings.inflator(int(y)) for y in uc["price_year"]]
    uc = uc.rename(columns={"item": "name"})
    other = pd.DataFrame([{"kind": i.kind, "category": "input", "name": i.name, "value": None, "unit": i.unit,
                           "price_year": None, "distribution": i.distribution,
                           "low": None, "high": None, "source": i.source,
                           "params": json.dumps(i.params)} for i in INPUTS.values()])
    table = pd.concat([uc, other], ignore_index=True).astype(object)
    return table.where(table.notna(), "")


def _run(args, parser) -> int:
    quiet = args.quiet
    deflator = load_deflator(args.deflator) if args.deflator else dict(DEFLATOR)
    try:
        settings = cu.CostSettings(price_year=args.price_year, horizon_years=args.horizon_years,
                                   discount_rate=args.discount_rate, sensitivity_rate=args.sensitivity_rate,
                                   unknown_internal=args.unknown_internal, deflator=deflator)
    except ValueError as err:
        parser.error(str(err))
    if args.draws < 100:
        parser.error("--draws must be at least 100")
    if args.evppi_knots < 1:
        parser.error("--evppi-knots must be >= 1")
    table_path = Path(args.data) if args.data else DEFAULT_UNIT_COSTS
    unit_costs = load_unit_costs(table_path, deflator=deflator)
    volumes = load_la_volumes(args.la_volumes) if args.la_volumes else None

    effects, diagnostics, hashed, synthetic_from = {}, {}, [table_path], {}
    for outcome, path in (("kinship", args.kinship_posterior), ("rereferral", args.rereferral_posterior)):
        if path is None:
            effects[outcome] = cu.published_effect_draws(outcome, args.draws, args.seed)
            continue
        values, tree = load_effect_draws(path)
        effects[outcome] = cu.posterior_effect_draws(outcome, values, str(path))
        synthetic_from[outcome] = posterior_synthetic_flag(tree)
        diagnostics[outcome] = cu.effect_diagnostics(tree)
        hashed.append(Path(path))
        log(diagnostics[outcome]["banner"], quiet=quiet and diagnostics[outcome]["ok"])
    if volumes is not None:
        hashed.append(Path(args.la_volumes))
    if args.deflator:
        hashed.append(Path(args.deflator))
    for outcome, eff in effects.items():
        log(f"{outcome}: {eff.source}", quiet=quiet)

    log(f"drawing {args.draws:,} Monte Carlo draws ...", quiet=quiet)
    draws = cu.sample_parameters(unit_costs, effects=effects, n_draws=args.draws, seed=args.seed,
                                 settings=settings, volumes=volumes)
    result = cu.analyse(draws, settings, n_knots=args.evppi_knots, seed=args.seed)

    from figures import costs as figs
    from figures.did import SYNTHETIC_NOTE

    main_key = f"rate_{settings.discount_rate:g}"
    main = result.headline[main_key]
    H, L = settings.horizon_years, len(draws.las)
    statements = {
        f"saves_money_{rate:g}": state(result.headline[f"rate_{rate:g}"]["p_saves_money"],
                                       f"SofS saves money over {H} years across the {L} LAs "
                                       f"(discounted at {rate:.1%})")
        for rate in settings.rates
    }
    statements["kinship_adds_cost"] = state(float(np.mean(result.outcomes[settings.discount_rate].total("kinship_cost") > 0)),
                                            "SofS's effect on kinship care adds placement costs")
    statements["rereferral_saves"] = state(float(np.mean(result.outcomes[settings.discount_rate].total("rereferral_cost") < 0)),
                                           "SofS's effect on re-referrals saves money")
    synthetic = any(v is True for v in synthetic_from.values())
    if synthetic:    # the synthetic flag travels from the posterior file to every output made from it
        statements = {k: f"[SYNTHETIC DATA] {v}" for k, v in statements.items()}
    summary = {
        "question": "Net cost of Signs of Safety (implementation plus outcome consequences) per LA and in total",
        "synthetic": synthetic,
        "effect_data": {k: ("synthetic" if v else "real" if v is False else "not stated by the posterior file")
                        for k, v in synthetic_from.items()},
        "settings": {"price_year": f"{settings.price_year}-{(settings.price_year + 1) % 100:02d}",
                     "horizon_years": H, "discount_rates": list(settings.rates),
                     "unknown_internal": settings.unknown_internal, "las": list(draws.las),
                     "n_draws": draws.n, "seed": args.seed, "evppi_knots": args.evppi_knots},
        "effect_sources": {k: {"kind": e.kind, "source": e.source, "n_effect_draws": int(e.draws.size),
                               "published": PUBLISHED_EFFECTS[k].__dict__} for k, e in effects.items()},
        "posterior_diagnostics": {k: {kk: vv for kk, vv in v.items() if kk != "banner"} for k, v in diagnostics.items()},
        "statements": statements,
        "report_verdict": REPORT_COST_VERDICT,
        "headline": result.headline,
        "deflator": {"series": {str(k): v for k, v in deflator.items()},
                     "source": DEFLATOR_SOURCE if not args.deflator else f"user file {args.deflator}"},
        "monte_carlo_note": ("mcse_mean is the Monte Carlo standard error of each mean assuming independent draws; "
                             "with a posterior file, draw i uses posterior draw i mod S, so precision about the "
                             "effect is limited by that file's effective sample size."),
        "provenance": provenance(seed=args.seed, data_hash=_combined_hash(hashed),
                                 data_label=", ".join(str(p) for p in hashed)),
    }

    def flag(figure):
        if synthetic:
            figure.text(0.5, -0.02, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")
        return figure

    with OutputDir(args.out) as out:
        out.write_json("summary.json", summary)
        by_la_out = result.by_la.assign(discount_rate=[f"{r:.1%}" for r in result.by_la["discount_rate"]])
        out.write_table("net_cost_by_la", by_la_out, floatfmt=",.0f")
        out.write_table("tornado", result.tornado, floatfmt=",.2f")
        out.write_table("evppi", result.evppi, floatfmt=",.2f")
        out.write_table("inputs", _inputs_table(unit_costs, settings), floatfmt="g")
        by_la_main = result.by_la[result.by_la["discount_rate"] == settings.discount_rate]
        out.save_figure("cost_distribution.png", flag(figs.cost_distribution(
            result.histograms[settings.discount_rate], by_la_main, p_saves=main["p_saves_money"],
            discount_rate=settings.discount_rate, price_year=settings.price_year, horizon_years=H)))
        out.save_figure("tornado.png", flag(figs.tornado(result.tornado)))
        out.save_figure("evppi.png", flag(figs.evppi_ranking(result.evppi, evpi=result.headline["evpi"])))
        out.save_figure("cost_effect_plane.png", flag(figs.cost_effect_plane(result.plane)))
        if args.save_draws:
            ds = draws.to_dataset()
            ds.attrs["synthetic"] = int(synthetic)
            ds.to_netcdf(out / "draws.nc", engine="h5netcdf")
        path = out.commit()

    net = main["total_net_cost"]
    if not quiet:
        if synthetic:
            print("NOTE: SYNTHETIC DATA: the effect draws come from a posterior fitted to simulated data "
                  "(an illustration of the method, not evidence)")
        print(f"Net cost of SofS, {L} LAs, {H} years, {summary['settings']['price_year']} prices, "
              f"{settings.discount_rate:.1%} discount: mean {_m(net['mean'])} "
              f"(95% interval {_m(net['eti95_low'])} to {_m(net['eti95_high'])})")
        for text in statements.values():
            print(" -", text[0].upper() + text[1:] + ".")
        print(f" - Kinship effect source: {effects['kinship'].source}")
        print(f" - Re-referral effect source: {effects['rereferral'].source}")
        print(f" - Report: {REPORT_COST_VERDICT}")
        top = result.evppi.head(3)
        print(" - EVPPI ranking (top 3): " + "; ".join(f"{r.label} £{r.evppi:,.0f}" for r in top.itertuples())
              + f" (EVPI £{result.headline['evpi']:,.0f})")
        print(f"Written to {path}")
    failed = [k for k, v in diagnostics.items() if not v["ok"]]
    return EXIT_DIAGNOSTICS if (args.strict and failed) else EXIT_OK


def posterior_synthetic_flag(tree) -> bool | None:
    """The synthetic flag a DiD command writes into its posterior file's attributes (None for a
    file that does not say: older outputs, other tools)."""
    value = tree.attrs.get("synthetic")
    if value is None:
        return None
    return bool(int(value)) if not isinstance(value, str) else value.strip().lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(lambda: _run(args, parser))


if __name__ == "__main__":
    raise SystemExit(main())

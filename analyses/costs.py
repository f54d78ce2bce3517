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
evppi.{csv,md}, ceac.{csv,md}, evsi.{csv,md}, inputs.{csv,md}, cost_distribution.png, tornado.png,
evppi.png, ceac.png, evsi.png, cost_effect_plane.png (and draws.nc with --save-draws). Every
output carries the effects' data label (synthetic / real / not stated / published estimates),
read from the posterior files' ``synthetic`` attribute.
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
    load_population_draws,
    load_unit_costs,
    unit_costs_frame,
)
from data.cost_inputs import posterior_synthetic_flag as _synthetic_flag
from models import cost_uncertainty as cu
from data.errors import DataError
from models.statements import state
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Costs',
    question='How likely is it that Signs of Safety saves money?',
    data_note="REAL published figures: the report's effect estimates and unit costs (assumptions marked in inputs.csv)",
    quick=(('--draws', '2000'),),
    order=90,
)

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
    p.add_argument("--evppi-knots", type=int, default=6,
                   help="ignored (kept for old scripts): the EVPPI smoother chooses its smoothness by GCV")
    p.add_argument("--evppi-se-draws", type=int, default=200,
                   help="coefficient draws for the EVPPI/EVSI standard errors (default 200)")
    p.add_argument("--onset-lag", default="0,1,5", metavar="MIN,MODE,MAX",
                   help="years before the effects change costs, triangular (default 0,1,5: the DiD measured "
                        "effects after settling-in of up to 5 years); 0,0,0 = from year 0")
    p.add_argument("--wtp-kinship", default="0:200000:21", metavar="LO:HI:N",
                   help="CEAC grid of willingness to pay per child kept in kinship care, GBP (default 0:200000:21)")
    p.add_argument("--wtp-rereferral", default="0:20000:21", metavar="LO:HI:N",
                   help="CEAC grid of willingness to pay per re-referral avoided, GBP (default 0:20000:21)")
    t = p.add_argument_group("EVSI of a new cluster-randomised trial (assumptions; all overridable)")
    t.add_argument("--no-evsi", action="store_true", help="skip the EVSI of a new trial")
    t.add_argument("--trial-sizes", default=",".join(str(k) for k in cu.DEFAULT_TRIAL_SIZES), metavar="LIST",
                   help="numbers of LAs k in the trial (default %(default)s)")
    t.add_argument("--population-las", type=int, default=150,
                   help="LAs that would adopt SofS on the trial's result (default 150)")
    t.add_argument("--trial-fixed-cost", type=float, default=500_000.0, help="GBP (default 500,000)")
    t.add_argument("--trial-cost-per-la", type=float, default=100_000.0, help="GBP per LA in the trial (default 100,000)")
    t.add_argument("--trial-children", default="200,1500", metavar="KIN,REREF",
                   help="children entering care and closed cases per LA per trial period (default 200,1500)")
    t.add_argument("--trial-residual-sd", type=float, default=3.0,
                   help="LA-level noise of an LA's before-after change beyond sampling, pp (default 3)")
    t.add_argument("--trial-between-sd", default="5,3", metavar="KIN,REREF",
                   help="between-LA SD of the effect, pp, used only when a posterior file has no sigma_tau "
                        "(default 5,3)")
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
    if args.draws < 100:
        parser.error("--draws must be at least 100")
    if args.evppi_knots < 1:
        parser.error("--evppi-knots must be >= 1")
    def floats(text: str, n: int, what: str) -> list[float]:
        try:
            vals = [float(x) for x in str(text).split(",")]
        except ValueError:
            parser.error(f"{what} must be {n} comma-separated numbers, got '{text}'")
        if len(vals) != n:
            parser.error(f"{what} must be {n} comma-separated numbers, got '{text}'")
        return vals

    def grid(text: str, what: str) -> tuple[float, ...]:
        try:
            lo, hi, num = str(text).split(":")
            lo_f, hi_f, num_i = float(lo), float(hi), int(num)
        except ValueError:
            parser.error(f"{what} must be LO:HI:N, got '{text}'")
        if not (0 <= lo_f <= hi_f and num_i >= 1):
            parser.error(f"{what} needs 0 <= LO <= HI and N >= 1, got '{text}'")
        return tuple(float(x) for x in np.linspace(lo_f, hi_f, num_i))

    try:
        settings = cu.CostSettings(price_year=args.price_year, horizon_years=args.horizon_years,
                                   discount_rate=args.discount_rate, sensitivity_rate=args.sensitivity_rate,
                                   unknown_internal=args.unknown_internal, deflator=deflator,
                                   onset_lag=tuple(floats(args.onset_lag, 3, "--onset-lag")))
        kin_n, rer_n = floats(args.trial_children, 2, "--trial-children")
        kin_sd, rer_sd = floats(args.trial_between_sd, 2, "--trial-between-sd")
        trial = cu.TrialDesign(fixed_cost=args.trial_fixed_cost, cost_per_la=args.trial_cost_per_la,
                               population_las=args.population_las,
                               children_per_la={"kinship": kin_n, "rereferral": rer_n},
                               residual_sd_pp=args.trial_residual_sd,
                               between_sd_pp={"kinship": kin_sd, "rereferral": rer_sd})
        sizes = tuple(int(x) for x in args.trial_sizes.split(","))
    except ValueError as err:
        parser.error(str(err))
    if any(k < 2 for k in sizes):
        parser.error("--trial-sizes must all be >= 2 (one LA per arm)")
    if args.evppi_se_draws < 2:
        parser.error("--evppi-se-draws must be >= 2")
    wtp_k, wtp_r = grid(args.wtp_kinship, "--wtp-kinship"), grid(args.wtp_rereferral, "--wtp-rereferral")
    table_path = Path(args.data) if args.data else DEFAULT_UNIT_COSTS
    unit_costs = load_unit_costs(table_path, deflator=deflator)
    volumes = load_la_volumes(args.la_volumes) if args.la_volumes else None

    effects, diagnostics, hashed, synthetic_from = {}, {}, [table_path], {}
    for outcome, path in (("kinship", args.kinship_posterior), ("rereferral", args.rereferral_posterior)):
        if path is None:
            effects[outcome] = cu.published_effect_draws(outcome, args.draws, args.seed)
            continue
        values, tree = load_effect_draws(path)
        try:
            population = load_population_draws(tree)
        except DataError as err:
            raise err.located(path) from None
        effects[outcome] = cu.posterior_effect_draws(outcome, values, str(path), population=population)
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
    result = cu.analyse(draws, settings, seed=args.seed, effects=effects, trial=None if args.no_evsi else trial,
                        trial_sizes=sizes, se_draws=args.evppi_se_draws, wtp_kinship=wtp_k, wtp_rereferral=wtp_r)

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
    data_label = effect_data_label(synthetic_from)
    if synthetic:    # the synthetic flag travels from the posterior file to every output made from it
        statements = {k: f"[SYNTHETIC DATA] {v}" for k, v in statements.items()}
    summary = {
        "question": "Net cost of Signs of Safety (implementation plus outcome consequences) per LA and in total",
        "synthetic": synthetic,
        "data_label": data_label,
        "effect_data": {k: ("synthetic" if v else "real" if v is False else "not stated by the posterior file")
                        for k, v in synthetic_from.items()},
        "settings": {"price_year": f"{settings.price_year}-{(settings.price_year + 1) % 100:02d}",
                     "horizon_years": H, "discount_rates": list(settings.rates),
                     "unknown_internal": settings.unknown_internal, "las": list(draws.las),
                     "n_draws": draws.n, "seed": args.seed, "evppi_se_draws": args.evppi_se_draws,
                     "onset_lag_years_triangular_min_mode_max": list(settings.onset_lag),
                     "wtp_kinship_grid": [wtp_k[0], wtp_k[-1], len(wtp_k)],
                     "wtp_rereferral_grid": [wtp_r[0], wtp_r[-1], len(wtp_r)],
                     "trial": None if args.no_evsi else {
                         "sizes": list(sizes), "population_las": trial.population_las,
                         "fixed_cost": trial.fixed_cost, "cost_per_la": trial.cost_per_la,
                         "children_per_la": dict(trial.children_per_la), "residual_sd_pp": trial.residual_sd_pp,
                         "between_sd_pp_fallback": dict(trial.between_sd_pp)}},
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
        figure.text(0.5, -0.02, SYNTHETIC_NOTE if synthetic else f"Effects: {data_label}", ha="center", va="top",
                    fontsize=8, color="firebrick" if synthetic else "dimgray")
        return figure

    def table(out, stem, frame, floatfmt):
        """CSV with a data-label column; Markdown with the label as its first line."""
        frame = frame.copy()
        frame.insert(0, "effect_data", data_label)
        frame.to_csv(out / f"{stem}.csv", index=False)
        head = f"**{SYNTHETIC_NOTE}**" if synthetic else f"Effects: {data_label}"
        (out / f"{stem}.md").write_text(head + "\n\n" + frame.drop(columns="effect_data").to_markdown(
            index=False, floatfmt=floatfmt) + "\n")

    with OutputDir(args.out) as out:
        out.write_json("summary.json", summary)
        by_la_out = result.by_la.assign(discount_rate=[f"{r:.1%}" for r in result.by_la["discount_rate"]])
        table(out.tmp, "net_cost_by_la", by_la_out, ",.0f")
        table(out.tmp, "tornado", result.tornado, ",.2f")
        table(out.tmp, "evppi", result.evppi, ",.2f")
        table(out.tmp, "ceac", result.ceac, ",.4g")
        table(out.tmp, "inputs", _inputs_table(unit_costs, settings), "g")
        if result.evsi is not None:
            table(out.tmp, "evsi", result.evsi, ",.2f")
            out.save_figure("evsi.png", flag(figs.evsi_curve(result.evsi, best_k=result.evsi.attrs["best_k"],
                                                             population_las=trial.population_las)))
        out.save_figure("ceac.png", flag(figs.ceac_curves(result.ceac)))
        by_la_main = result.by_la[result.by_la["discount_rate"] == settings.discount_rate]
        out.save_figure("cost_distribution.png", flag(figs.cost_distribution(
            result.histograms[settings.discount_rate], by_la_main, p_saves=main["p_saves_money"],
            discount_rate=settings.discount_rate, price_year=settings.price_year, horizon_years=H)))
        out.save_figure("tornado.png", flag(figs.tornado(result.tornado)))
        out.save_figure("evppi.png", flag(figs.evppi_ranking(result.evppi, evpi=result.headline["evpi"])))
        out.write_text("LABEL.txt", f"effects: {data_label}\n" + (SYNTHETIC_NOTE + "\n" if synthetic else ""))
        out.save_figure("cost_effect_plane.png", flag(figs.cost_effect_plane(result.plane)))
        if args.save_draws:
            ds = draws.to_dataset()
            ds.attrs["synthetic"] = int(synthetic)
            ds.attrs["data_label"] = data_label
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
        if result.evsi is not None:
            a = result.evsi.attrs
            best = (f"best k = {a['best_k']} (ENBS £{a['best_enbs']:,.0f})" if a["best_k"] is not None else
                    f"no trial size on the grid is worth its cost (best ENBS £{a['best_enbs']:,.0f})")
            print(f" - EVSI of a cluster-randomised trial for {a['population_las']} LAs: "
                  f"EVPPI of the mean effects £{a['population_evppi_effects']:,.0f}; {best}")
        print(f" - Effects: {data_label}")
        print(f"Written to {path}")
    failed = [k for k, v in diagnostics.items() if not v["ok"]]
    return EXIT_DIAGNOSTICS if (args.strict and failed) else EXIT_OK


def posterior_synthetic_flag(tree) -> bool | None:
    """The synthetic flag a DiD command writes into its posterior file's attributes (None for a
    file that does not say: older outputs, other tools); see
    :func:`data.cost_inputs.posterior_synthetic_flag`."""
    return _synthetic_flag(tree)


def effect_data_label(flags: dict[str, bool | None]) -> str:
    """One label for every output: where the effect draws' data came from."""
    if not flags:
        return "published estimates (no posterior file)"
    if any(v is True for v in flags.values()):
        return "SYNTHETIC (a posterior file was fitted to simulated data)"
    if all(v is False for v in flags.values()):
        return "real data (every posterior file says so)"
    return "not stated by the posterior file(s)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(lambda: _run(args, parser))


if __name__ == "__main__":
    raise SystemExit(main())

"""Staggered-adoption difference-in-differences on your own panel, with posterior statements.

Any panel of units (LAs, counties, schools) over periods, with a first-treated period per unit
(0 or empty: never treated), and any outcome the engine's likelihoods take (shares, counts
with exposure, continuous values, durations), child-level or aggregated, CSV or Parquet.
The model (``models.did``) estimates effects by adoption cohort and period, ATT(g,t),
partially pooled, and aggregates them as R's ``did`` does (simple, dynamic, group, calendar)::

    uv run python -m analyses.did --data ../shared/validation/mpdta/mpdta.csv \\
        --unit countyreal --time year --cohort first.treat --outcome lemp --likelihood normal \\
        --label "log teen employment" --units "log points" --rope 0.01 --mid 0.03 --target -0.05

    uv run python -m analyses.did --data my_children.csv --unit la --time year --cohort adoption_year \\
        --outcome kinship --likelihood binomial --direction up --relative-target 0.2 --label "kinship care"

Every label, unit and threshold is yours: ``--rope`` (region of practical equivalence),
``--mid`` (minimal important difference) and ``--target`` are in the outcome's units (pp for
shares); numbers are printed to the precision the posterior supports. Outputs as for the
SofS commands: posterior netCDF per named prior, ``statements.json`` (the typed result),
tables (``aggregates``, ``att_gt``, ``event_study``, ...), figures, diagnostics, the
frequentist cross-check (saturated Sun-Abraham regression and two-way fixed effects), and
``--strict`` exits 1 when any diagnostic fails. Bad input exits 2 naming file, row and column.
"""

from __future__ import annotations

import argparse

import numpy as np

from analyses.common import analysis_parser, run_cli
from analyses.did_runner import Inputs, Plan, finish, named_priors, run_plan, settings_from
from data.did_panel import PanelColumns, load_panel
from data.errors import DataError
from models.did.crosscheck import mean_did, staggered_did
from models.did.design import BASES, CONTROLS, EFFECTS, DesignSpec
from models.did.likelihoods import LIKELIHOODS, get_likelihood
from models.did.model import ModelSpec
from models.did.summaries import Reading
from models.priors import PRIOR_NAMES
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title="The DiD engine on R did's reference data",
    question="Does the toolkit's staggered DiD reproduce R's did on its own data (mpdta: minimum wage and teen employment, 500 US counties, 2003-2007)?",
    data_note="REAL reference data of R's did package (../shared/validation/mpdta)",
    args=('--data', '../shared/validation/mpdta/mpdta.csv', '--unit', 'countyreal', '--time', 'year', '--cohort', 'first.treat', '--outcome', 'lemp', '--likelihood', 'normal', '--label', 'log teen employment', '--units', 'log points', '--target', '-0.05'),
    extra_inputs=('../shared/validation/mpdta',),
    order=70,
)

NAME = "did"
DIRECTIONS = {"up": 1, "down": -1, "none": 0}


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser(NAME, __doc__, priors=PRIOR_NAMES, target_accept=0.95, mass_matrix="diag")
    p.set_defaults(tune=1000)
    g = p.add_argument_group("your data's columns")
    g.add_argument("--unit", required=True, metavar="COL", help="unit identifier (an LA, a county)")
    g.add_argument("--time", required=True, metavar="COL", help="period (a whole number, e.g. a year)")
    g.add_argument("--cohort", required=True, metavar="COL", help="first treated period (0 or empty: never treated)")
    g.add_argument("--outcome", required=True, metavar="COL", help="the outcome column (see --likelihood)")
    g.add_argument("--trials", metavar="COL", help="binomial: trials per row (successes in --outcome)")
    g.add_argument("--exposure", metavar="COL", help="poisson/negbinomial: exposure per row (default 1)")
    g.add_argument("--covariates", default="", metavar="LIST", help="comma-separated categorical covariates")
    g.add_argument("--settling", metavar="COL", help="periods after adoption to leave out (per unit; default none)")
    m = p.add_argument_group("the model")
    m.add_argument("--likelihood", required=True, choices=sorted(LIKELIHOODS))
    m.add_argument("--effects", default="cohort_period", choices=EFFECTS,
                   help="cohort_period: ATT(g,t) (default); unit: one effect per treated unit")
    m.add_argument("--control", default="never", choices=CONTROLS, help="never-treated (default) or not-yet-treated")
    m.add_argument("--base", default="last", choices=BASES,
                   help="last: the last period before adoption, as did and Sun-Abraham (default); all: every "
                        "pre-adoption period, as the imputation estimator of Borusyak, Jaravel and Spiess")
    m.add_argument("--anticipation", type=int, default=0, metavar="K", help="periods of anticipation (default 0)")
    m.add_argument("--unit-trends", action="store_true", help="unit-specific linear trends (needs --base all)")
    m.add_argument("--unit-deviations", action="store_true",
                   help="cohort_period: units' own deviations from their cohort's effects (partial pooling)")
    m.add_argument("--reweight", action="store_true",
                   help="sample the broadest prior only and reweight it for the others (PSIS; refits when k > 0.7)")
    r = p.add_argument_group("how results are read (in the outcome's units)")
    r.add_argument("--label", default=None, metavar="TEXT", help="what the outcome is, in words (default: its column)")
    r.add_argument("--units", default=None, metavar="TEXT",
                   help="units of effects (default: pp for shares, the outcome's units otherwise)")
    r.add_argument("--rope", type=float, default=None, metavar="X", help="half-width of the region of practical "
                   "equivalence (default: 1 pp for shares, 0.1 x the within-unit SD for continuous outcomes, 5%% of "
                   "the overall rate or mean duration)")
    r.add_argument("--mid", type=float, default=None, metavar="Y", help="minimal important difference "
                   "(default: 2.5 x --rope)")
    r.add_argument("--target", type=float, default=None, metavar="T", help="the change the programme claims (signed, "
                   "in the outcome's units); anchors the sceptical and enthusiastic priors")
    r.add_argument("--relative-target", type=float, default=0.2, metavar="R",
                   help="used when --target is not given: a relative change in --direction (default 0.2)")
    r.add_argument("--direction", default="none", choices=sorted(DIRECTIONS),
                   help="the direction the programme expects (default none: statements speak of a rise or fall, "
                        "and the enthusiastic prior of a --relative-target is centred on a rise)")
    r.add_argument("--per", type=float, default=None, metavar="F",
                   help="counts: report rates per F units of exposure (e.g. 10000); shares are in pp")
    r.add_argument("--decimals", type=int, default=None, metavar="D", help="decimals (default: from the posterior SD)")
    r.add_argument("--subject", default="the treatment", metavar="TEXT", help="what is evaluated, in sentences")
    r.add_argument("--pretrend-threshold", type=float, default=None, metavar="X",
                   help="pre-trend departures larger than this are reported (default: --mid)")
    return p


def default_rope(lik, cells, factor: float | None) -> float:
    """The region of practical equivalence when the user gives none (two significant digits):
    1 pp for shares; a tenth of the within-unit SD for continuous outcomes; 5% of the overall
    rate for counts, and of the mean duration for durations."""
    y, n = cells["y"].to_numpy(float), cells["n"].to_numpy(float)
    if lik.link == "logit":
        value = 1.0
    elif lik.identity:
        value = 0.1 * float(np.std(y - cells.groupby("unit")["y"].transform("mean").to_numpy()))
    elif lik.hurdle:
        value = 0.05 * float(cells["dur_sum"].sum() / n.sum())
    else:
        value = 0.05 * float(y.sum() / n.sum()) * (factor or 1.0)
    return float(f"{max(value, 1e-12):.2g}")


def load_inputs(args: argparse.Namespace) -> Inputs:
    if args.data is None:
        raise DataError("analyses.did needs your data: --data FILE (see --help; the mpdta example is in the README)")
    cols = PanelColumns(unit=args.unit, time=args.time, cohort=args.cohort, outcome=args.outcome, trials=args.trials,
                        exposure=args.exposure, settling=args.settling,
                        covariates=tuple(c.strip() for c in args.covariates.split(",") if c.strip()))
    pc = load_panel(args.data, cols, args.likelihood, control=args.control, anticipation=args.anticipation)
    return Inputs(pc.cells, pc.source, pc.data_hash, pc.synthetic, pc.n_records, pc.notes, pc.missing)


def make_plan(args: argparse.Namespace, inputs: Inputs, argv: list[str] | None) -> Plan:
    lik = get_likelihood(args.likelihood)
    covariates = tuple(c.strip() for c in args.covariates.split(",") if c.strip())
    try:
        design = DesignSpec(args.likelihood, effects=args.effects, control=args.control, base=args.base,
                            anticipation=args.anticipation, unit_trends=args.unit_trends, covariates=covariates)
    except ValueError as err:
        raise DataError(str(err), column="--unit-trends") from None
    factor = args.per if (args.per and lik.link == "log") else None
    model = ModelSpec(period_effects="fixed", unit_deviations=args.unit_deviations, factor=factor)
    cells = inputs.cells
    y = cells["y"].to_numpy(float)
    units = args.units or (lik.default_units if not lik.identity else f"units of {args.outcome}")
    if lik.link == "log" and not lik.hurdle and args.per:
        units = args.units or f"per {args.per:g} of exposure"
    rope = args.rope if args.rope is not None else default_rope(lik, cells, factor)
    mid = args.mid if args.mid is not None else 2.5 * rope
    direction = DIRECTIONS[args.direction]
    reading = Reading(label=args.label or args.outcome, units=units, rope=rope, mid=mid, direction=direction,
                      target=args.target, relative_target=args.relative_target if (args.target is None and direction) else None,
                      decimals=args.decimals, subject=args.subject, where="the treated units")
    rel = args.relative_target if args.target is None else None
    rel_dir = direction or 1       # no claimed direction: the enthusiastic prior of a relative target is a rise
    zero = (-rel_dir, 0.2, "same-day records") if lik.hurdle else None
    scale_name = {"identity": "outcome units", "logit": "log-odds ratio", "log": "log rate ratio"}[lik.link]
    try:
        priors, zero_priors, checks = named_priors(
            cells, design, model, reading, direction=rel_dir, relative_target=rel, target=args.target,
            choice=args.prior, overrides=args.prior_override,
            neutral_sd=2.0 * float(np.std(y)) if lik.identity else 1.0, scale_name=scale_name, seed=args.seed + 17,
            zero=zero)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(str(err), column="--target" if args.target is not None else "--relative-target") from None
    secondary = None
    if lik.hurdle:
        secondary = Reading(label="same-day records", units="pp", rope=2.0, mid=5.0, decimals=1, subject=args.subject,
                            where=reading.where)

    def frequentist(plan, exp):
        out = []
        c = exp.design.cells.assign(treated_post=(exp.design.data["treated"] > 0).astype(float))
        share_like = lik.link == "logit"
        f_units = reading.units
        mult = 100.0 if share_like else (factor or 1.0)
        if not lik.hurdle:
            st, _ = staggered_did(exp.design.cells[exp.design.cells["phase"] != "settling"], units=f_units,
                                  factor=mult if not lik.identity else 1.0, share=not lik.identity, label="staggered")
            out.append(st)
        tot = "dur_sum" if lik.hurdle else None
        twfe = mean_did(c if tot else c.assign(y=c["y"] / c["n"] * mult if not lik.identity else c["y"]), covariates,
                        total=tot, units=f_units, label="two-way fixed effects, one effect")
        out.append(twfe)
        return out

    return Plan(name=NAME, title=f"{reading.label}: Bayesian staggered difference-in-differences", reading=reading,
                design_spec=design, model_spec=model, priors=priors, settings=settings_from(args), seed=args.seed,
                out=args.out, population="", secondary=secondary, zero_priors=zero_priors, reported=None,
                pretrend_threshold=args.pretrend_threshold if args.pretrend_threshold is not None else mid,
                reweight=args.reweight, strict=args.strict, quiet=args.quiet, keep_draws=args.keep_draws, argv=argv,
                provenance_extra={"columns": vars(PanelColumns(args.unit, args.time, args.cohort, args.outcome,
                                                               args.trials, args.exposure, covariates, args.settling)),
                                  "likelihood": args.likelihood},
                frequentist=frequentist, prior_check=checks,
                why=(f"Design chosen by the user: {args.effects} effects, {args.control}-treated controls, base "
                     f"{args.base}."))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.anticipation < 0:
        parser.error("--anticipation must be >= 0")
    for name in ("rope", "mid"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0")

    def body() -> int:
        inputs = load_inputs(args)
        plan = make_plan(args, inputs, argv)
        return finish(run_plan(plan, inputs))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())

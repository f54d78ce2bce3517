"""Family engagement and working alliance: graded response models for the contrast study.

Replaces the report's averaged Likert scores, Cronbach's alpha, t-tests, kappa and OLS on
competence (RR1054, Tables 5 and 6 and the Working Alliance Inventory paragraphs) with
Bayesian graded response models (``models.psychometric_irt``):

- Yatchmenoff Client Engagement Scale: a multidimensional GRM (one correlated trait per
  subscale) and a unidimensional one (the overall score), each with a latent regression on
  SofS vs contrast arm, the social worker's competence, and site and social-worker effects;
  the two are compared by PSIS-LOO;
- Working Alliance Inventory (short form): family and social worker answer the same items;
  each rater has its own item parameters and its own trait, correlated; their agreement is
  reported as posteriors (trait correlation, mean score difference).

Statements (under each named prior, beside the report's own): P(families in SofS sites are
more engaged) per subscale and overall; P(more competent social workers have more engaged
families, i.e. a negative competence slope on the report's 1-5 scale); the same for the WAI.

    uv run python -m analyses.engagement                      # embedded SYNTHETIC data
    uv run python -m analyses.engagement --data answers.csv   # your item-level answers
    uv run python -m analyses.engagement --prior neutral --draws 500 --chains 2
    # thousands of families: longer steps and a short warm-up sufficed with the earlier pooled priors;
    # with the default priors this did not converge at 5,000 (benchmarks/README.md): lengthen --tune
    uv run python -m analyses.engagement --data answers.csv --target-accept 0.8 --tune 150 --draws 950

The input format (one row per family; ``family,site,arm,worker,competence`` and one column
per item) is described in ``data.instruments``; the item keys are configuration
(``data/instruments/*.yaml``; pass your own with ``--instrument-yatchmenoff/--instrument-wai``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.common import (EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, analysis_parser, hash_file, hash_frame, log,
                             provenance, run_cli)
from data.errors import DataError
from data.instruments import (default_instrument, instruments_present, load_instrument, read_responses,
                              validate_responses)
from data.synthetic_engagement import (DEFAULT_DATA_SEED, REPORTED_ALPHA, SYNTHETIC_LABEL, TABLE5, TABLE6,
                                       simulate_engagement)
from figures import irt as fig
from models import irt_fit, irt_loo
from models import psychometric_irt as irt
from models.diagnostics import check_sampling
from models.sampling import sample_checked
from models.priors import PRIOR_NAMES, select_priors
from models.serialize import write_idata
from models.statements import state
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Family engagement and working alliance',
    question='Did families engage differently with SofS social workers (Yatchmenoff scale, WAI)?',
    order=60,
)

#: Default NUTS target acceptance rate, ``--target-accept`` (smaller steps: no divergences in
#: the WAI model at 60 families; 0.8 sampled the four-factor model at 5,000 families without
#: divergences).
TARGET_ACCEPT = 0.95

#: Draws multiplier per model role: in the WAI model the worker-rated trait's competence slope is
#: nearly confounded with the raters' own leniency (competence varies mostly between workers,
#: who rate one to three families each); it mixes slowly, and its sampling is cheap.
DRAWS_FACTOR = {"raters": 2}

#: Region of practical equivalence and minimal important difference on the average-score scale.
SCALE_THRESHOLDS = {"yatchmenoff": (0.1, 0.25), "wai": (0.1, 0.3)}

REPORT_SOFS = {
    "yatchmenoff": "no significant differences between pilot and contrast sites on any subscale, although "
                   "the contrast sites had better average scores (Table 5: pilot {p} vs contrast {c})",
    "wai": "no significant difference in average scores between SofS and contrast sites (t-tests)",
}
REPORT_COMPETENCE_WAI = {
    "family": "family scores increased significantly with competence (p = 0.004)",
    "worker": "social worker scores increased significantly with competence (p = 0.041)",
}
REPORT_AGREEMENT = ("responses linearly associated except Q5; kappa showed agreement except Q10; a paired "
                    "t-test found no significant difference between social worker and family averages; the "
                    "difference was not significantly affected by competence")


#: Site-SD prior means (latent SDs) of the arm-statement sensitivity analysis.
SITE_SD_SENSITIVITY = (0.1, 0.3, 0.6, 1.0)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got '{text}'") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got '{text}'")
    return value


def _positive_list(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    return tuple(_positive(t) for t in text.split(","))


def _parser() -> argparse.ArgumentParser:
    p = analysis_parser("engagement", __doc__, priors=PRIOR_NAMES, target_accept=TARGET_ACCEPT)
    # 2000 draws per chain (the WAI model: twice that, DRAWS_FACTOR) and target_accept 0.95
    # (TARGET_ACCEPT): with subscale traits
    # correlated ~0.9 the competence slopes reached a bulk ESS of only ~300-400 per 4000 draws
    # and R-hat ~1.01-1.016, and the WAI model had a few divergences, at the project defaults.
    p.set_defaults(draws=2000)
    p.add_argument("--instrument-yatchmenoff", type=Path, default=None, metavar="YAML",
                   help="your item key for the Yatchmenoff scale (default: data/instruments/yatchmenoff.yaml)")
    p.add_argument("--instrument-wai", type=Path, default=None, metavar="YAML",
                   help="your item key for the WAI short form (default: data/instruments/wai.yaml)")
    p.add_argument("--instrument", type=Path, action="append", default=[], metavar="YAML",
                   help="the item key of any Likert instrument (items, categories, reverse coding, subscales, "
                        "labels; see data/instruments/); repeatable; replaces the two default instruments")
    p.add_argument("--site-sd-prior", type=_positive, default=irt.GRMPriors().site_sd, metavar="MEAN",
                   help="mean of the Gamma(2, 2/MEAN) prior of the between-site SD of the trait (latent SDs; "
                        f"default {irt.GRMPriors().site_sd})")
    p.add_argument("--site-sd-sensitivity", type=_positive_list, default=SITE_SD_SENSITIVITY, metavar="M1,M2,...",
                   help="re-sample the arm effect (reference prior) under these site-SD prior means and report the "
                        "arm statement for each (default: " + ",".join(map(str, SITE_SD_SENSITIVITY))
                        + "; 'none' to skip)")
    p.add_argument("--synthetic-seed", type=int, default=DEFAULT_DATA_SEED,
                   help=f"seed of the embedded synthetic data set (default {DEFAULT_DATA_SEED})")
    p.add_argument("--no-loo", action="store_true",
                   help="skip the unidimensional Yatchmenoff fit and the LOO comparison (faster)")
    p.add_argument("--loo-draws", type=int, default=1000, metavar="N",
                   help="posterior draws (at random) for leave-one-respondent-out (default 1000)")
    p.add_argument("--no-dif", action="store_true",
                   help="skip the differential item functioning check (a fit with item x arm shifts per instrument)")
    p.add_argument("--prior-predictive", action="store_true",
                   help="also run a prior predictive check of the answer distributions")
    return p


def _load(args: argparse.Namespace):
    if getattr(args, "instrument", None):
        instruments = [load_instrument(path) for path in args.instrument]
        names = [i.name for i in instruments]
        if len(set(names)) != len(names):
            raise DataError(f"two item keys share the name '{next(n for n in names if names.count(n) > 1)}'",
                            file=args.instrument[-1])
    else:
        instruments = [load_instrument(args.instrument_yatchmenoff) if args.instrument_yatchmenoff
                       else default_instrument("yatchmenoff"),
                       load_instrument(args.instrument_wai) if args.instrument_wai else default_instrument("wai")]
    if args.data is None:
        syn = simulate_engagement(args.synthetic_seed)
        frame = validate_responses(syn.frame, instruments)
        return frame, instruments, f"{SYNTHETIC_LABEL} (seed {args.synthetic_seed})", hash_frame(syn.frame), True
    frame = read_responses(args.data, instruments)
    return frame, instruments, str(args.data), hash_file(args.data), False


def _ref_fit(fits: dict, ref: str):
    """The reference prior's fit (a model without an arm column has one fit only)."""
    return fits[ref] if ref in fits else next(iter(fits.values()))


def _has_arm(data: irt.GRMData) -> bool:
    return data.design is not None and data.design.sofs is not None


def _has_site_arm(data: irt.GRMData) -> bool:
    return _has_arm(data) and data.design.site is not None


def _sample(sampler, data_feed, args, draws_factor: int, seed: int, notes: list[str], label: str):
    """One checked fit (re-fitted with smaller steps when divergent transitions are its only
    problem, :func:`models.sampling.sample_checked`); what was done goes into ``notes``."""
    idata, diag, note = sample_checked(
        lambda ta, s: sampler.sample(data=data_feed, draws=args.draws * draws_factor, tune=args.tune,
                                     chains=args.chains, seed=s, target_accept=ta),
        lambda i: check_sampling(i, irt.diagnostic_vars(i)), target_accept=args.target_accept, seed=seed)
    if note:
        notes.append(f"{label}: {note}")
        log(f"  {label}: {note}", quiet=args.quiet)
    return idata, diag


def _fits(data: irt.GRMData, priors, args, label: str, draws_factor: int,
          notes: list[str]) -> tuple[dict, dict, object, object]:
    """Compile once, sample under each named prior (one fit without an arm column); the fits
    and their diagnostics by prior name."""
    log(f"compiling the {label} model ...", quiet=args.quiet)
    t0 = time.perf_counter()
    model = irt.build_grm(data, effect_prior=priors[0], priors=irt.GRMPriors(site_sd=args.site_sd_prior))
    sampler = irt.grm_sampler(model, data)
    log(f"  compiled in {time.perf_counter() - t0:.0f} s", quiet=args.quiet)
    fits, checked = {}, {}
    for k, pr in enumerate(priors if _has_arm(data) else priors[:1]):
        t0 = time.perf_counter()
        feed = ({"effect_prior_mean": np.asarray(pr.mean), "effect_prior_sd": np.asarray(pr.sd)}
                if data.design is not None else None)
        fits[pr.name], checked[pr.name] = _sample(sampler, feed, args, draws_factor, args.seed + k,
                                                  notes, f"{label} / {pr.name}")
        log(f"  sampled {label} under the {pr.name} prior in {time.perf_counter() - t0:.0f} s", quiet=args.quiet)
    return fits, checked, model, sampler


def _site_sd_sensitivity(sampler, data: irt.GRMData, prior, args, draws_factor: int, rope: float,
                         mid: float, diags: dict, notes: list[str], key: str) -> list[dict]:
    """The arm effect re-sampled under each site-SD prior mean (reference prior of the effect);
    each fit's diagnostics go into ``diags`` with the others (``--strict`` counts them)."""
    rows = []
    for k, m in enumerate(args.site_sd_sensitivity):
        label = f"{key} / site-SD prior mean {m:g} ({prior.name})"
        idata, d = _sample(sampler, {"effect_prior_mean": np.asarray(prior.mean), "effect_prior_sd": np.asarray(prior.sd),
                                     "site_sd_prior_mean": np.asarray(m)},
                           args, draws_factor, args.seed + 100 + k, notes, label)
        diags[label] = d
        eff = irt.effect_table(irt.score_scale_effects(idata, data, seed=args.seed), data, prior=prior.name,
                               rope=rope, mid=mid)
        sd_site = irt.posterior_arrays(idata)["sd_site"]
        for r in eff[eff["quantity"] == "sofs"].itertuples():
            rows.append({"instrument": data.instrument, "site_sd_prior_mean": m,
                         "site_sd_prior": f"Gamma(2, 2/{m:g})", "dimension": r.dimension, "label": r.label,
                         "prior": prior.name, "mean": r.mean, "eti95_low": r.eti95_low, "eti95_high": r.eti95_high,
                         "p_better": r.p_better, "sd_site_posterior_mean": float(sd_site.mean()),
                         "diagnostics_ok": d.ok})
        log(f"  site-SD prior mean {m:g}: " + d.banner(), quiet=args.quiet and d.ok)
    return rows


def _dif_check(data: irt.GRMData, prior, args, diags: dict, main_fit, key: str, draws_factor: int,
               notes: list[str]) -> pd.DataFrame:
    """Differential item functioning between arms as a check: the model re-fitted with
    shrunken item x arm shifts (``build_grm(dif=True)``, reference prior), each item's shift
    in latent SDs, and the arm effect with and without the shifts."""
    log(f"{key}: differential item functioning check (item x arm shifts) ...", quiet=args.quiet)
    model = irt.build_grm(data, effect_prior=prior, priors=irt.GRMPriors(site_sd=args.site_sd_prior), dif=True)
    sampler = irt.grm_sampler(model, data)
    label = f"{key} / DIF check ({prior.name})"
    idata, d = _sample(sampler, None, args, draws_factor, args.seed + 200, notes, label)
    diags[label] = d
    log(f"{key} / DIF check: " + d.banner(), quiet=args.quiet and d.ok)
    table = irt.dif_table(idata, data)
    with_dif = irt.posterior_arrays(idata)["sofs_effect"]
    without = irt.posterior_arrays(main_fit)["sofs_effect"]
    by_dim = {data.dimension[k]: (float(without[:, k].mean()), float(with_dif[:, k].mean()))
              for k in range(data.n_dim)}
    table["arm_effect_latent_mean"] = [by_dim[dm][0] for dm in table["dimension"]]
    table["arm_effect_latent_mean_with_dif"] = [by_dim[dm][1] for dm in table["dimension"]]
    table["dif_sd_mean"] = float(idata["posterior"]["dif_sd"].mean())
    table["prior"] = prior.name
    table["diagnostics_ok"] = d.ok
    return table


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    try:
        chosen = select_priors(irt.engagement_priors(), args.prior, args.prior_override)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    frame, instruments, source, data_hash, synthetic = _load(args)
    present = instruments_present(frame, instruments)
    if not present:
        raise DataError("no answers to any instrument's items", file=args.data)
    ref = "neutral" if any(p.name == "neutral" for p in chosen) else chosen[0].name
    log(f"data: {source}; {len(frame)} families; instruments: {', '.join(i.name for i in present)}", quiet=args.quiet)

    specs = []   # (key, instrument, data, role)
    for inst in present:
        raters = [r for r in inst.raters if any(inst.column(r, it.id) in frame.columns for it in inst.used_items)]
        if len(raters) > 1:
            specs.append((f"{inst.name}_raters", inst, irt.grm_data(frame, inst, dimensions="rater"), "raters"))
            continue
        sub = irt.grm_data(frame, inst, dimensions="subscale")
        if sub.n_dim > 1:
            specs.append((f"{inst.name}_subscales", inst, sub, "subscales"))
            if not args.no_loo:
                specs.append((f"{inst.name}_overall", inst, irt.grm_data(frame, inst, dimensions="overall"), "overall"))
        else:   # one subscale: the unidimensional model is the main model
            specs.append((f"{inst.name}_overall", inst, irt.grm_data(frame, inst, dimensions="overall"), "main"))

    fits, models, diags, tables = {}, {}, {}, {k: [] for k in ("effects", "reliability", "items", "persons",
                                                                "ppc", "correlations", "prior_predictive",
                                                                "site_sd_sensitivity", "dif", "item_fit")}
    extras: dict = {"loo": {}, "agreement": {}, "curves": {}, "global_fit": {}}
    sampling_notes: list[str] = []
    ref_prior = [p for p in chosen if p.name == ref]
    for key, inst, data, role in specs:
        # The unidimensional model serves the LOO comparison (and a sensitivity row): reference prior only.
        use = ref_prior if role == "overall" else chosen
        fits[key], checked, models[key], sampler = _fits(data, use, args, key.replace("_", " "),
                                                         DRAWS_FACTOR.get(role, 1), sampling_notes)
        ref_key = ref if ref in fits[key] else next(iter(fits[key]))
        rope, mid = SCALE_THRESHOLDS.get(inst.name, (0.1, 0.25))
        for name, idata in fits[key].items():
            d = checked[name]
            diags[f"{key} / {name}"] = d
            log(f"{key} / {name}: " + d.banner(), quiet=args.quiet and d.ok)
            if _has_arm(data) or (data.design is not None and data.design.competence is not None):
                eff = irt.score_scale_effects(idata, data, seed=args.seed)
                tables["effects"].append(irt.effect_table(eff, data, prior=name, rope=rope, mid=mid).assign(
                    model="overall (unidimensional)" if role == "overall" else role))
        if role != "overall" and _has_site_arm(data) and args.site_sd_sensitivity:
            log(f"{key}: arm effect over site-SD prior means {list(args.site_sd_sensitivity)} ...", quiet=args.quiet)
            tables["site_sd_sensitivity"].append(pd.DataFrame(_site_sd_sensitivity(
                sampler, data, ref_prior[0], args, DRAWS_FACTOR.get(role, 1), rope, mid, diags, sampling_notes,
                key)).assign(model=role))
        if role != "overall" and _has_arm(data) and not args.no_dif:
            tables["dif"].append(_dif_check(data, ref_prior[0] if ref_prior else chosen[0], args, diags,
                                            fits[key][ref_key], key, DRAWS_FACTOR.get(role, 1),
                                            sampling_notes).assign(model=role))
        idata = fits[key][ref_key]
        tables["reliability"].append(irt.reliability_table(idata, data, seed=args.seed).assign(model=role))
        tables["items"].append(irt.item_parameter_table(idata, data).assign(model=role))
        tables["persons"].append(irt.person_scores(idata, data, seed=args.seed).assign(model=role))
        tables["ppc"].append(irt.ppc_item_distributions(idata, data, seed=args.seed).assign(model=role))
        tables["item_fit"].append(irt_fit.item_fit(idata, data, seed=args.seed).assign(model=role))
        extras["global_fit"][key] = irt_fit.global_fit(idata, data, seed=args.seed)
        tables["correlations"].append(irt.trait_correlations(idata, data).assign(model=role))
        if args.prior_predictive:
            tables["prior_predictive"].append(
                irt.prior_predictive_categories(models[key], data, seed=args.seed).assign(model=role))
        if role != "overall":
            extras["curves"][key] = irt.information_curves(idata, data, seed=args.seed)
        if role == "raters":
            extras["agreement"][key] = irt.rater_agreement(idata, data, seed=args.seed)
    data_by_key = {key: data for key, _, data, _ in specs}
    for inst in present:
        multi, uni = f"{inst.name}_subscales", f"{inst.name}_overall"
        if multi in fits and uni in fits:
            log(f"{inst.name}: leave-one-respondent-out (traits integrated out by quadrature) ...", quiet=args.quiet)
            trees = {label: irt_loo.respondent_log_likelihood(_ref_fit(fits[k], ref), data_by_key[k],
                                                              max_draws=args.loo_draws, seed=args.seed)
                     for label, k in (("multidimensional (subscales)", multi), ("unidimensional (overall)", uni))}
            extras["loo"][inst.name], _ = irt_loo.loo_by_respondent(trees)

    effects = (pd.concat(tables["effects"], ignore_index=True) if tables["effects"]
               else pd.DataFrame(columns=["instrument", "dimension", "label", "prior", "quantity", "model"]))
    sens = (pd.concat(tables["site_sd_sensitivity"], ignore_index=True) if tables["site_sd_sensitivity"]
            else pd.DataFrame())
    statements, results = _statements(effects, extras["agreement"], specs, chosen)
    statements += _sensitivity_statements(sens, specs)
    record = {
        "analysis": "engagement", "synthetic": synthetic, "data_source": source,
        "data_notes": ([SYNTHETIC_LABEL, "embedded default: the draw closest to the report's Table 5/6 summaries; "
                        "item keys and the contrast sites' split are assumptions (see data/instruments/*.yaml)"]
                       if synthetic else []),
        "instruments": {i.name: {"source": i.source, "title": i.title, "scale": i.scale_label,
                                 "items_used": [c for c in i.columns(used_only=True) if c in frame.columns],
                                 "reverse_coded": [it.id for it in i.items if it.reverse],
                                 "dropped": [it.id for it in i.items if it.drop], "raters": list(i.raters)}
                        for i in present},
        "priors": {p.name: vars(p) for p in chosen},
        "model_priors": irt.GRMPriors(site_sd=args.site_sd_prior).to_dict(),
        "latent_regression": {key: (list(data.design.covariates) if data.design is not None else [])
                              for key, _, data, _ in specs},
        "latent_regression_note": ("the latent regression of each model uses the columns listed (arm, competence, "
                                   "site, worker); a model with none has theta ~ N(0, R)"),
        "site_sd_sensitivity": sens.to_dict(orient="records"),
        "reference_prior": ref,
        "results": results,
        "statements": statements,
        "reliability": pd.concat(tables["reliability"], ignore_index=True).to_dict(orient="records"),
        "reported_alpha": REPORTED_ALPHA,
        "loo": {k: v.to_dict(orient="records") for k, v in extras["loo"].items()},
        "dif": (pd.concat(tables["dif"], ignore_index=True).to_dict(orient="records") if tables["dif"] else []),
        "item_fit": pd.concat(tables["item_fit"], ignore_index=True).to_dict(orient="records"),
        "global_fit": {k: {kk: vv for kk, vv in g.to_dict().items() if kk != "pairs"}
                       for k, g in extras["global_fit"].items()},
        "agreement": {k: {q: irt.summarise_draws(v, prob=0.95) for q, v in a.items()}
                      for k, a in extras["agreement"].items()},
        "ppc_share_inside90": {k: float(t["inside90"].mean()) for k, t in
                               zip([s[0] for s in specs], tables["ppc"])},
        "diagnostics": {k: d.to_dict() for k, d in diags.items()},
        "diagnostics_ok": all(d.ok for d in diags.values()),
        "sampling_notes": sampling_notes,
        "provenance": provenance(seed=args.seed, data_hash=data_hash, data_label=source, argv=argv,
                                 draws=args.draws, tune=args.tune, chains=args.chains,
                                 target_accept=args.target_accept, synthetic_seed=args.synthetic_seed if synthetic else None),
    }
    _write(args, record, tables, extras, effects, fits, specs, ref, synthetic)
    _print_headline(record, statements, args)
    if args.strict and not record["diagnostics_ok"]:
        log("--strict: sampling diagnostics failed; exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _scale(inst) -> str:
    return inst.scale_label


def _statements(effects: pd.DataFrame, agreement: dict, specs, priors) -> tuple[list[dict], list[dict]]:
    """Every posterior statement beside the report's, and one headline record per prior.

    Wording comes from the instrument file (``respondents``, ``more_trait``, ``title``,
    ``categories``, ``score_direction``); the report's own findings are quoted beside the
    statements only for the report's instruments (``yatchmenoff``, ``wai``).
    """
    rows, results = [], []
    for pr in priors:
        e = effects[effects["prior"] == pr.name]
        lines, headline = [], None
        for key, inst, data, role in specs:
            if role == "overall":
                continue
            sub = e[(e["instrument"] == inst.name) & (e["model"] == role)]
            who = inst.respondents
            for r in sub[sub["quantity"] == "sofs"].itertuples():
                where = f"{r.label.lower()}" if role != "raters" else f"as rated by the {r.label.lower()}"
                claim = (f"{who} in SofS sites {inst.more_trait} than in contrast sites ({where}; SofS minus contrast "
                         f"{r.mean:+.2f} points on the {_scale(inst)}, 95% interval {r.eti95_low:+.2f} to "
                         f"{r.eti95_high:+.2f})")
                if inst.name == "yatchmenoff" and r.dimension in TABLE5:
                    report = REPORT_SOFS["yatchmenoff"].format(p=TABLE5[r.dimension][0], c=TABLE5[r.dimension][1])
                elif inst.name == "yatchmenoff" and r.dimension == "overall" and "overall" in TABLE5:
                    report = REPORT_SOFS["yatchmenoff"].format(p=TABLE5["overall"][0], c=TABLE5["overall"][1])
                else:
                    report = REPORT_SOFS.get(inst.name, "")
                rows.append(_row(pr.name, inst.name, role, r, "sofs", state(r.p_better, claim), report))
                lines.append(rows[-1]["statement"])
            if headline is None and len(sub[sub["quantity"] == "sofs"]):
                s = sub[sub["quantity"] == "sofs"]
                headline = (inst, s[s["dimension"] == "overall"].iloc[0] if (s["dimension"] == "overall").any()
                            else s.iloc[0])
            sign = "<" if inst.score_direction == "lower_is_better" else ">"
            for r in sub[sub["quantity"] == "competence"].itertuples():
                where = f"{r.label.lower()}" if role != "raters" else f"as rated by the {r.label.lower()}"
                claim = (f"{who} of more competent social workers {inst.more_trait} ({where}: slope {r.mean:+.3f} "
                         f"points per competence point on the {_scale(inst)}, 95% interval {r.eti95_low:+.3f} to "
                         f"{r.eti95_high:+.3f}; P(slope {sign} 0))")
                if inst.name == "yatchmenoff" and r.dimension in TABLE6:
                    coef, se, _, p = TABLE6[r.dimension]
                    report = (f"Table 6: {coef:+.3f} (SE {se}, p = {p}; printed without its minus sign), "
                              + ("not significant" if p >= 0.05 else "significant"))
                elif inst.name == "wai":
                    report = REPORT_COMPETENCE_WAI.get(r.dimension, "")
                else:
                    report = ""
                rows.append(_row(pr.name, inst.name, role, r, "competence", state(r.p_better, claim), report))
                lines.append(rows[-1]["statement"])
        eff = headline[1].to_dict() if headline is not None else {}
        results.append({"prior": pr.name, "effect": {k: eff.get(k) for k in ("mean", "eti95_low", "eti95_high")},
                        "effect_label": (f"SofS minus contrast, expected {_scale(headline[0])}"
                                         + (f" ({headline[1]['label']})" if headline is not None else "")
                                         if headline is not None else "no arm column: no SofS effect"),
                        "statements": lines})
    for key, a in agreement.items():
        corr, diff = a["latent_corr"], a["score_difference"]
        rows.append({"prior": "reference", "instrument": key.split("_")[0], "model": "raters",
                     "dimension": "family vs worker", "quantity": "agreement",
                     "statement": state(float(np.mean(corr > 0)),
                                        f"family and social worker alliance traits are positively correlated "
                                        f"(posterior mean r = {corr.mean():.2f}, 95% interval "
                                        f"{np.quantile(corr, 0.025):.2f} to {np.quantile(corr, 0.975):.2f})"),
                     "report": REPORT_AGREEMENT})
        rows.append({"prior": "reference", "instrument": key.split("_")[0], "model": "raters",
                     "dimension": "family vs worker", "quantity": "score difference",
                     "statement": state(float(np.mean(np.abs(diff) < 0.25)),
                                        f"family and social worker average scores differ by less than 0.25 points "
                                        f"(family minus worker {diff.mean():+.2f}, 95% interval "
                                        f"{np.quantile(diff, 0.025):+.2f} to {np.quantile(diff, 0.975):+.2f})"),
                     "report": REPORT_AGREEMENT})
    return rows, results


def _sensitivity_statements(sens: pd.DataFrame, specs) -> list[dict]:
    """The arm statement of each dimension under every site-SD prior mean (reference prior)."""
    rows = []
    if sens.empty:
        return rows
    insts = {inst.name: inst for _, inst, _, _ in specs}
    for (name, model, dim), g in sens.groupby(["instrument", "model", "dimension"], sort=False):
        inst = insts[name]
        parts = [f"{r.site_sd_prior}: SofS minus contrast {r.mean:+.2f} [{r.eti95_low:+.2f}, {r.eti95_high:+.2f}], "
                 f"P = {r.p_better:.2f}" for r in g.itertuples()]
        label = g["label"].iloc[0]
        rows.append({"prior": g["prior"].iloc[0], "instrument": name, "model": model, "dimension": dim,
                     "label": label, "quantity": "sofs over site-SD priors",
                     "statement": (f"P({inst.respondents} in SofS sites {inst.more_trait}; {label.lower()}) under the "
                                   f"site-SD prior " + "; ".join(parts)
                                   + f" ({inst.scale_label}, 95% intervals)"),
                     "report": ""})
    return rows


def _row(prior, instrument, model, r, quantity, statement, report) -> dict:
    return {"prior": prior, "instrument": instrument, "model": model, "dimension": r.dimension,
            "label": r.label, "quantity": quantity, "mean": r.mean, "eti95_low": r.eti95_low,
            "eti95_high": r.eti95_high, "p_better": r.p_better, "statement": statement, "report": report}


def _write(args, record, tables, extras, effects, fits, specs, ref, synthetic) -> None:
    with OutputDir(args.out) as out:
        out.write_json("statements.json", record)
        out.write_table("effects", effects)
        out.write_table("statements", pd.DataFrame(record["statements"]))
        for name in ("reliability", "items", "persons", "ppc", "correlations", "prior_predictive", "dif", "item_fit"):
            if tables[name]:
                out.write_table({"items": "item_parameters", "persons": "person_scores", "ppc": "ppc_items",
                                 "correlations": "trait_correlations"}.get(name, name),
                                pd.concat(tables[name], ignore_index=True))
        for inst, table in extras["loo"].items():
            out.write_table(f"loo_{inst}", table)
        if extras["global_fit"]:
            out.write_table("local_dependence", pd.concat([g.pairs.assign(model=k) for k, g in extras["global_fit"].items()],
                                                          ignore_index=True))
        diag_rows = [pd.DataFrame(d["variables"]).assign(fit=k) for k, d in record["diagnostics"].items()]
        out.write_table("diagnostics", pd.concat(diag_rows, ignore_index=True))
        for key, _, data, role in specs:
            write_idata(irt.slim_posterior(_ref_fit(fits[key], ref)), out / f"posterior_{key}.nc",
                        keep_draws=args.keep_draws)
        for key, curves in extras["curves"].items():
            out.save_figure(f"{key}_icc.png", fig.item_curves(curves, synthetic=synthetic))
            rel = next((t for t in tables["reliability"] if len(t) and t["instrument"].iloc[0] == curves["instrument"]
                        and t["model"].iloc[0] != "overall"), None)
            out.save_figure(f"{key}_information.png", fig.test_information(curves, rel, synthetic=synthetic))
        for (key, _, _, role), ppc in zip(specs, tables["ppc"]):
            if role != "overall":
                out.save_figure(f"{key}_ppc.png", fig.ppc_items(ppc, synthetic=synthetic))
        insts = {i.name: i for _, i, _, _ in specs}
        if tables["site_sd_sensitivity"]:
            out.write_table("site_sd_sensitivity", pd.concat(tables["site_sd_sensitivity"], ignore_index=True))
        for inst in effects["instrument"].unique():
            e = effects[(effects["instrument"] == inst) & ~effects["model"].str.startswith("overall")].copy()
            scale = insts[inst].scale_label
            if not (e["quantity"] == "sofs").any():
                continue
            if inst == "yatchmenoff":
                e["report_value"] = [TABLE6.get(d, (np.nan,))[0] for d in e["dimension"]]
            out.save_figure(f"{inst}_sofs_effect.png", fig.effects_forest(
                e, quantity="sofs", xlabel=f"SofS minus contrast ({scale})",
                title=f"{inst}: SofS vs contrast sites, by named prior (95% intervals)", synthetic=synthetic))
            if not (e["quantity"] == "competence").any():
                continue
            out.save_figure(f"{inst}_competence_slope.png", fig.effects_forest(
                e, quantity="competence", xlabel=f"change per competence point ({scale})",
                title=f"{inst}: competence slope (x = report's OLS slope)",
                report_col="report_value" if inst == "yatchmenoff" else None, synthetic=synthetic))
        persons = pd.concat(tables["persons"], ignore_index=True)
        for key, inst, data, role in specs:
            if role not in ("subscales", "main"):
                continue
            dim = "overall" if role == "subscales" else data.dimension[0]
            ov = persons[(persons["instrument"] == inst.name) & (persons["dimension"] == dim)
                         & (persons["model"] == role)]
            if len(ov):
                out.save_figure(f"{inst.name}_person_scores.png", fig.person_score_plot(
                    ov, dimension=dim, title=f"{inst.respondents.capitalize()}' overall {inst.trait} "
                                             "(expected score, 90% interval)",
                    xlabel=f"expected {inst.scale_label}", synthetic=synthetic))
        out.write_text("report.md", _markdown(record))
        out.commit()


def _markdown(record: dict) -> str:
    titles = ", ".join(i.get("title", name) for name, i in record["instruments"].items())
    lines = [f"# {titles}: graded response models", ""]
    if record["synthetic"]:
        lines += [f"**{SYNTHETIC_LABEL}.**", ""]
    lines += [f"Data: {record['data_source']}", ""]
    for key, cov in record["latent_regression"].items():
        lines.append(f"- {key}: latent regression on " + (", ".join(cov) if cov else "nothing (no arm, competence, "
                                                           "site or worker column): theta ~ N(0, R)"))
    lines += ["", "## Statements beside the report's", ""]
    for s in record["statements"]:
        lines.append(f"- [{s['prior']}] {s['statement']}  \n  *Report:* {s['report']}")
    lines += ["", "## Reliability (posterior marginal reliability vs Cronbach's alpha)", ""]
    for r in record["reliability"]:
        lines.append(f"- {r['instrument']} {r['label']}: {r['reliability_mean']:.2f} "
                     f"({r['reliability_low90']:.2f} to {r['reliability_high90']:.2f}); alpha {r['cronbach_alpha']:.3f}")
    if record["loo"]:
        lines += ["", "## Model comparison: leave one respondent out (traits integrated out)", "",
                  "PSIS-LOO over respondents, each respondent's traits integrated out of the likelihood by "
                  "adaptive Gauss-Hermite quadrature (models.irt_loo); Pareto k > 0.7 marks an unreliable "
                  "respondent-level estimate.", ""]
        for inst, rows in record["loo"].items():
            for r in rows:
                lines.append(f"- {inst}, {r['model']}: elpd {r['elpd']:.1f} (SE {r['se']:.1f}), difference from the "
                             f"best {r['elpd_diff']:.1f} (SE {r['dse']:.1f}); Pareto k > 0.7: "
                             f"{r['n_pareto_k_high']} (max {r['max_pareto_k']:.2f})")
            if any(r["n_pareto_k_high"] for r in rows):
                lines.append(f"- {inst}: some respondents' PSIS estimates are unreliable (k > 0.7), so the elpd "
                             "difference is indicative only; K-fold cross-validation by respondent (re-fitting "
                             "without each fold) would settle it and is not run")
    lines += ["", "## Model checks (posterior predictive p-values; PPP < 0.05 flagged, a screen)", ""]
    for key, g in record["global_fit"].items():
        lines.append(f"- {key}: global moment discrepancy ({g['moments']} moments) PPP {g['ppp']:.2f}; "
                     f"item pairs flagged for local dependence: {g['n_pairs_flagged']}")
    for r in record["item_fit"]:
        if r["flagged"]:
            lines.append(f"- {r['model']} {r['instrument']} {r['item']}: {r['statistic']} PPP {r['ppp']:.3f} (flagged)")
    if not any(r["flagged"] for r in record["item_fit"]):
        lines.append(f"- no item flagged by the grouped chi-square or the outfit ({len(record['item_fit'])} checks)")
    if record["dif"]:
        lines += ["", "## Differential item functioning between arms (check)", "",
                  "Each item's shift for SofS families relative to the other items of its dimension, in latent SDs "
                  "(shrunken item x arm terms, Student-t(4) scaled by HalfNormal(0.3); flagged when the 95% interval "
                  "excludes 0), and the arm effect on the trait with and without the shifts.", ""]
        for r in record["dif"]:
            lines.append(f"- {r['instrument']} {r['item']} ({r['dimension']}): {r['dif_mean']:+.2f} "
                         f"[{r['dif_eti95_low']:+.2f}, {r['dif_eti95_high']:+.2f}]" + ("  **flagged**" if r["flagged"] else ""))
        seen = set()
        for r in record["dif"]:
            if (r["instrument"], r["dimension"]) not in seen:
                seen.add((r["instrument"], r["dimension"]))
                lines.append(f"- arm effect, {r['instrument']} {r['dimension']}: {r['arm_effect_latent_mean']:+.2f} latent SD "
                             f"without DIF terms, {r['arm_effect_latent_mean_with_dif']:+.2f} with them")
    lines += ["", "## Diagnostics", ""]
    for k, d in record["diagnostics"].items():
        lines.append(f"- {k}: {'passed' if d['ok'] else 'FAILED: ' + '; '.join(d['problems'])}")
    lines += [f"- re-fitted: {n}" for n in record.get("sampling_notes", [])]
    return "\n".join(lines) + "\n"


def _print_headline(record: dict, statements: list[dict], args) -> None:
    if args.quiet:
        return
    print(f"\nGraded response models - {record['data_source']}")
    if record["synthetic"]:
        print("!! SYNTHETIC DATA: an illustration of the method, not the evaluation's families")
    for key, cov in record["latent_regression"].items():
        print(f"  {key}: latent regression on {', '.join(cov) if cov else 'nothing (item answers only)'}")
    for s in statements:
        if s["prior"] in (record["reference_prior"], "reference"):
            print(f"  - {s['statement']}\n      report: {s['report']}")
    for inst, rows in record["loo"].items():
        best = rows[0]
        print(f"  LOO by respondent ({inst}, traits integrated out): best = {best['model']}; " + "; ".join(
            f"{r['model']}: elpd_diff {r['elpd_diff']:.1f} (se {r['dse']:.1f})" for r in rows[1:])
            + "; Pareto k > 0.7: " + ", ".join(f"{r['model']} {r['n_pareto_k_high']}" for r in rows))
    misfit = [f"{r['item']} ({r['statistic']})" for r in record["item_fit"] if r["flagged"]]
    print(f"  item fit: {len(misfit)} of {len(record['item_fit'])} item checks flagged"
          + (f" ({', '.join(misfit)})" if misfit else "") + "; global fit PPP "
          + ", ".join(f"{k} {g['ppp']:.2f}" for k, g in record["global_fit"].items()))
    if record["dif"]:
        flagged = [f"{r['instrument']} {r['item']}" for r in record["dif"] if r["flagged"]]
        print(f"  DIF check (item x arm): {len(flagged)} of {len(record['dif'])} items flagged"
              + (f" ({', '.join(flagged)})" if flagged else ""))
    print(f"  diagnostics: {'all passed' if record['diagnostics_ok'] else 'FAILED (see above)'}; outputs: {args.out}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())

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
    # thousands of families: longer steps and a short warm-up suffice (benchmarks/irt.py, README)
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
from models import psychometric_irt as irt
from models.diagnostics import check_sampling
from models.priors import PRIOR_NAMES, select_priors
from models.sampling import CompiledSampler
from models.statements import state

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
    p.add_argument("--synthetic-seed", type=int, default=DEFAULT_DATA_SEED,
                   help=f"seed of the embedded synthetic data set (default {DEFAULT_DATA_SEED})")
    p.add_argument("--no-loo", action="store_true",
                   help="skip the unidimensional Yatchmenoff fit and the LOO comparison (faster)")
    p.add_argument("--prior-predictive", action="store_true",
                   help="also run a prior predictive check of the answer distributions")
    return p


def _load(args: argparse.Namespace):
    instruments = [load_instrument(args.instrument_yatchmenoff) if args.instrument_yatchmenoff
                   else default_instrument("yatchmenoff"),
                   load_instrument(args.instrument_wai) if args.instrument_wai else default_instrument("wai")]
    if args.data is None:
        syn = simulate_engagement(args.synthetic_seed)
        frame = validate_responses(syn.frame, instruments)
        return frame, instruments, f"{SYNTHETIC_LABEL} (seed {args.synthetic_seed})", hash_frame(syn.frame), True
    frame = read_responses(args.data, instruments)
    return frame, instruments, str(args.data), hash_file(args.data), False


def _fits(data: irt.GRMData, priors, args, label: str, draws_factor: int = 1) -> tuple[dict, object]:
    """Compile once, sample under each named prior."""
    log(f"compiling the {label} model ...", quiet=args.quiet)
    t0 = time.perf_counter()
    model = irt.build_grm(data, effect_prior=priors[0])
    sampler = CompiledSampler(model)
    log(f"  compiled in {time.perf_counter() - t0:.0f} s", quiet=args.quiet)
    fits = {}
    for k, pr in enumerate(priors):
        t0 = time.perf_counter()
        fits[pr.name] = sampler.sample(
            data={"effect_prior_mean": np.asarray(pr.mean), "effect_prior_sd": np.asarray(pr.sd)},
            draws=args.draws * draws_factor, tune=args.tune, chains=args.chains, seed=args.seed + k,
            target_accept=args.target_accept)
        log(f"  sampled {label} under the {pr.name} prior in {time.perf_counter() - t0:.0f} s", quiet=args.quiet)
    return fits, model


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
        if len(inst.raters) > 1:
            specs.append((f"{inst.name}_raters", inst, irt.grm_data(frame, inst, dimensions="rater"), "raters"))
        else:
            specs.append((f"{inst.name}_subscales", inst, irt.grm_data(frame, inst, dimensions="subscale"), "subscales"))
            if not args.no_loo:
                specs.append((f"{inst.name}_overall", inst, irt.grm_data(frame, inst, dimensions="overall"), "overall"))

    fits, models, diags, tables = {}, {}, {}, {k: [] for k in ("effects", "reliability", "items", "persons",
                                                                "ppc", "correlations", "prior_predictive")}
    extras: dict = {"loo": {}, "agreement": {}, "curves": {}}
    ref_prior = [p for p in chosen if p.name == ref]
    for key, inst, data, role in specs:
        # The unidimensional model serves the LOO comparison (and a sensitivity row): reference prior only.
        use = ref_prior if role == "overall" else chosen
        fits[key], models[key] = _fits(data, use, args, key.replace("_", " "), DRAWS_FACTOR.get(role, 1))
        rope, mid = SCALE_THRESHOLDS.get(inst.name, (0.1, 0.25))
        for pr in use:
            idata = fits[key][pr.name]
            d = check_sampling(idata, irt.diagnostic_vars(idata))
            diags[f"{key} / {pr.name}"] = d
            log(f"{key} / {pr.name}: " + d.banner(), quiet=args.quiet and d.ok)
            eff = irt.score_scale_effects(idata, data, seed=args.seed)
            tables["effects"].append(irt.effect_table(eff, data, prior=pr.name, rope=rope, mid=mid).assign(
                model="overall (unidimensional)" if role == "overall" else role))
        idata = fits[key][ref]
        tables["reliability"].append(irt.reliability_table(idata, data, seed=args.seed).assign(model=role))
        tables["items"].append(irt.item_parameter_table(idata, data).assign(model=role))
        tables["persons"].append(irt.person_scores(idata, data, seed=args.seed).assign(model=role))
        tables["ppc"].append(irt.ppc_item_distributions(idata, data, seed=args.seed).assign(model=role))
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
            for k in (multi, uni):
                irt.add_log_likelihood(fits[k][ref], data_by_key[k])
            extras["loo"][inst.name] = irt.compare_loo({"multidimensional (subscales)": fits[multi][ref],
                                                        "unidimensional (overall)": fits[uni][ref]})

    effects = pd.concat(tables["effects"], ignore_index=True)
    statements, results = _statements(effects, extras["agreement"], specs, chosen)
    record = {
        "analysis": "engagement", "synthetic": synthetic, "data_source": source,
        "data_notes": ([SYNTHETIC_LABEL, "embedded default: the draw closest to the report's Table 5/6 summaries; "
                        "item keys and the contrast sites' split are assumptions (see data/instruments/*.yaml)"]
                       if synthetic else []),
        "instruments": {i.name: {"source": i.source, "items_used": [it.id for it in i.used_items],
                                 "reverse_coded": [it.id for it in i.items if it.reverse],
                                 "dropped": [it.id for it in i.items if it.drop], "raters": list(i.raters)}
                        for i in present},
        "priors": {p.name: vars(p) for p in chosen},
        "model_priors": irt.GRMPriors().to_dict(),
        "reference_prior": ref,
        "results": results,
        "statements": statements,
        "reliability": pd.concat(tables["reliability"], ignore_index=True).to_dict(orient="records"),
        "reported_alpha": REPORTED_ALPHA,
        "loo": {k: v.to_dict(orient="records") for k, v in extras["loo"].items()},
        "agreement": {k: {q: irt.summarise_draws(v, prob=0.95) for q, v in a.items()}
                      for k, a in extras["agreement"].items()},
        "ppc_share_inside90": {k: float(t["inside90"].mean()) for k, t in
                               zip([s[0] for s in specs], tables["ppc"])},
        "diagnostics": {k: d.to_dict() for k, d in diags.items()},
        "diagnostics_ok": all(d.ok for d in diags.values()),
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


def _statements(effects: pd.DataFrame, agreement: dict, specs, priors) -> tuple[list[dict], list[dict]]:
    """Every posterior statement beside the report's, and one headline record per prior."""
    rows, results = [], []
    for pr in priors:
        e = effects[effects["prior"] == pr.name]
        lines = []
        for key, inst, data, role in specs:
            if role == "overall":
                continue
            sub = e[(e["instrument"] == inst.name) & (e["model"] == role)]
            for r in sub[sub["quantity"] == "sofs"].itertuples():
                if inst.name == "yatchmenoff":
                    dim = r.dimension
                    claim = (f"families in SofS sites are more engaged than in contrast sites ({r.label.lower()}; "
                             f"SofS minus contrast {r.mean:+.2f} points on the 1-5 score, 95% interval "
                             f"{r.eti95_low:+.2f} to {r.eti95_high:+.2f})")
                    report = REPORT_SOFS["yatchmenoff"].format(p=TABLE5[dim][0], c=TABLE5[dim][1])
                else:
                    claim = (f"the working alliance is stronger in SofS sites as rated by the {r.label.lower()} "
                             f"(SofS minus contrast {r.mean:+.2f} points on the 1-7 score, 95% interval "
                             f"{r.eti95_low:+.2f} to {r.eti95_high:+.2f})")
                    report = REPORT_SOFS["wai"]
                rows.append(_row(pr.name, inst.name, role, r, "sofs", state(r.p_better, claim), report))
                lines.append(rows[-1]["statement"])
            for r in sub[sub["quantity"] == "competence"].itertuples():
                if inst.name == "yatchmenoff":
                    dim = r.dimension
                    claim = (f"more competent social workers have more engaged families ({r.label.lower()}: "
                             f"slope {r.mean:+.3f} points per competence point, 95% interval "
                             f"{r.eti95_low:+.3f} to {r.eti95_high:+.3f}; P(slope < 0))")
                    coef, se, _, p = TABLE6[dim]
                    report = (f"Table 6: {coef:+.3f} (SE {se}, p = {p}; printed without its minus sign), "
                              + ("not significant" if p >= 0.05 else "significant"))
                else:
                    claim = (f"more competent social workers have a stronger alliance as rated by the "
                             f"{r.label.lower()} (slope {r.mean:+.3f} points per competence point, 95% interval "
                             f"{r.eti95_low:+.3f} to {r.eti95_high:+.3f}; P(slope > 0))")
                    report = REPORT_COMPETENCE_WAI.get(r.dimension, "")
                rows.append(_row(pr.name, inst.name, role, r, "competence", state(r.p_better, claim), report))
                lines.append(rows[-1]["statement"])
        head = e[(e["instrument"] == "yatchmenoff") & (e["quantity"] == "sofs") & (e["model"] == "subscales")]
        head = head[head["dimension"] == "overall"] if (head["dimension"] == "overall").any() else head
        eff = head.iloc[0].to_dict() if len(head) else {}
        results.append({"prior": pr.name, "effect": {k: eff.get(k) for k in ("mean", "eti95_low", "eti95_high")},
                        "effect_label": "SofS minus contrast, expected Yatchmenoff score (1-5, lower = more engaged)",
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


def _row(prior, instrument, model, r, quantity, statement, report) -> dict:
    return {"prior": prior, "instrument": instrument, "model": model, "dimension": r.dimension,
            "label": r.label, "quantity": quantity, "mean": r.mean, "eti95_low": r.eti95_low,
            "eti95_high": r.eti95_high, "p_better": r.p_better, "statement": statement, "report": report}


def _write(args, record, tables, extras, effects, fits, specs, ref, synthetic) -> None:
    with OutputDir(args.out) as out:
        out.write_json("statements.json", record)
        out.write_table("effects", effects)
        out.write_table("statements", pd.DataFrame(record["statements"]))
        for name in ("reliability", "items", "persons", "ppc", "correlations", "prior_predictive"):
            if tables[name]:
                out.write_table({"items": "item_parameters", "persons": "person_scores", "ppc": "ppc_items",
                                 "correlations": "trait_correlations"}.get(name, name),
                                pd.concat(tables[name], ignore_index=True))
        for inst, table in extras["loo"].items():
            out.write_table(f"loo_{inst}", table)
        diag_rows = [pd.DataFrame(d["variables"]).assign(fit=k) for k, d in record["diagnostics"].items()]
        out.write_table("diagnostics", pd.concat(diag_rows, ignore_index=True))
        for key, _, data, role in specs:
            irt.slim_posterior(fits[key][ref]).to_netcdf(out / f"posterior_{key}.nc")
        for key, curves in extras["curves"].items():
            out.save_figure(f"{key}_icc.png", fig.item_curves(curves, synthetic=synthetic))
            rel = next((t for t in tables["reliability"] if len(t) and t["instrument"].iloc[0] == curves["instrument"]
                        and t["model"].iloc[0] != "overall"), None)
            out.save_figure(f"{key}_information.png", fig.test_information(curves, rel, synthetic=synthetic))
        for (key, _, _, role), ppc in zip(specs, tables["ppc"]):
            if role != "overall":
                out.save_figure(f"{key}_ppc.png", fig.ppc_items(ppc, synthetic=synthetic))
        for inst in effects["instrument"].unique():
            e = effects[(effects["instrument"] == inst) & ~effects["model"].str.startswith("overall")].copy()
            scale = "1-5 score, lower = more engaged" if inst == "yatchmenoff" else "1-7 score, higher = stronger alliance"
            if inst == "yatchmenoff":
                e["report_value"] = [TABLE6.get(d, (np.nan,))[0] for d in e["dimension"]]
            out.save_figure(f"{inst}_sofs_effect.png", fig.effects_forest(
                e, quantity="sofs", xlabel=f"SofS minus contrast ({scale})",
                title=f"{inst}: SofS vs contrast sites, by named prior (95% intervals)", synthetic=synthetic))
            out.save_figure(f"{inst}_competence_slope.png", fig.effects_forest(
                e, quantity="competence", xlabel=f"change per competence point ({scale})",
                title=f"{inst}: competence slope (x = report's OLS slope)",
                report_col="report_value" if inst == "yatchmenoff" else None, synthetic=synthetic))
        persons = pd.concat(tables["persons"], ignore_index=True)
        ov = persons[(persons["instrument"] == "yatchmenoff") & (persons["dimension"] == "overall")
                     & (persons["model"] == "subscales")]
        if len(ov):
            out.save_figure("yatchmenoff_person_scores.png", fig.person_score_plot(
                ov, dimension="overall", title="Families' overall engagement (expected score, 90% interval)",
                xlabel="expected average Yatchmenoff score (1-5, lower = more engaged)", synthetic=synthetic))
        out.write_text("report.md", _markdown(record))
        out.commit()


def _markdown(record: dict) -> str:
    lines = ["# Family engagement and working alliance (graded response models)", ""]
    if record["synthetic"]:
        lines += [f"**{SYNTHETIC_LABEL}.**", ""]
    lines += [f"Data: {record['data_source']}", "", "## Statements beside the report's", ""]
    for s in record["statements"]:
        lines.append(f"- [{s['prior']}] {s['statement']}  \n  *Report:* {s['report']}")
    lines += ["", "## Reliability (posterior marginal reliability vs Cronbach's alpha)", ""]
    for r in record["reliability"]:
        lines.append(f"- {r['instrument']} {r['label']}: {r['reliability_mean']:.2f} "
                     f"({r['reliability_low90']:.2f} to {r['reliability_high90']:.2f}); alpha {r['cronbach_alpha']:.3f}")
    lines += ["", "## Diagnostics", ""]
    for k, d in record["diagnostics"].items():
        lines.append(f"- {k}: {'passed' if d['ok'] else 'FAILED: ' + '; '.join(d['problems'])}")
    return "\n".join(lines) + "\n"


def _print_headline(record: dict, statements: list[dict], args) -> None:
    if args.quiet:
        return
    print(f"\nEngagement (graded response models) - {record['data_source']}")
    if record["synthetic"]:
        print("!! SYNTHETIC DATA: an illustration of the method, not the evaluation's families")
    for s in statements:
        if s["prior"] in (record["reference_prior"], "reference"):
            print(f"  - {s['statement']}\n      report: {s['report']}")
    for inst, rows in record["loo"].items():
        best = rows[0]
        print(f"  LOO ({inst}): best = {best['model']}; " + "; ".join(
            f"{r['model']}: elpd_diff {r['elpd_diff']:.1f} (se {r['dse']:.1f})" for r in rows[1:]))
    print(f"  diagnostics: {'all passed' if record['diagnostics_ok'] else 'FAILED (see above)'}; outputs: {args.out}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())

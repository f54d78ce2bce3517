"""`python -m analyses.report`: rendering from small fake result folders, caching, and a real browser.

Everything here runs on hand-made output folders and stub analysis modules in a temporary
"repository" (``--root``), so the tests take seconds and do not depend on which analyses exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from analyses import report
from models.did.result import (DataInfo, DesignInfo, DidResult, Frequentist, OutcomeInfo, PriorResult, ReportedResult,
                               Refit, Robustness, is_did_result)

PASSING_FIT = {"ok": True, "problems": [], "divergences": 0, "n_draws": 200, "ebfmi": [0.9, 1.0],
               "thresholds": {"rhat_max": 1.01, "ess_min": 400, "ebfmi_min": 0.3},
               "variables": [{"variable": "mu", "rhat": 1.001, "ess_bulk": 900.0, "ess_tail": 800.0}]}
FAILING_FIT = {"ok": False, "problems": ["R-hat 1.054 > 1.01 for 'la_effect'", "bulk ESS 45 < 400 for 'la_effect'"],
               "divergences": 3, "n_draws": 200, "ebfmi": [0.8, 0.7],
               "thresholds": {"rhat_max": 1.01, "ess_min": 400, "ebfmi_min": 0.3},
               "variables": [{"variable": "alpha", "rhat": 1.002, "ess_bulk": 600.0, "ess_tail": 500.0},
                             {"variable": "la_effect", "rhat": 1.054, "ess_bulk": 45.0, "ess_tail": 90.0}]}
PROVENANCE = {"created_at": "2026-01-01T00:00:00+00:00", "command": "kinship.py --draws 100", "seed": 7,
              "data": "SYNTHETIC study twin", "data_hash": "sha256:abc123", "git_commit": "0123456789abcdef",
              "packages": {"pymc": "6.4.0", "arviz": "1.3.0"}, "draws": 100}
MODEL_DOC = ('r"""Hierarchical DiD.\n\nModel::\n\n    logit p_c = alpha + u[la_c] + D_c * tau[la_c]\n\n'
             'Effects\n-------\nEach pilot\'s effect :math:`\\tau_i \\sim N(\\mu_\\tau, \\sigma_\\tau^2)`, with '
             '``mu_tau`` the *named* prior:\n\n.. math::\n\n   a_i &= \\alpha + \\sigma z_i \\\\\n'
             '   \\operatorname{logit} p &= \\eta\n\n- pooled across :func:`pilots`\n"""\n')
STUB = textwrap.dedent('''\
    """{doc}"""
    {imports}

    def main(argv=None):
        return 0


    if __name__ == "__main__":
        raise SystemExit(main())
    ''')
RUNNABLE = textwrap.dedent('''\
    """A stub analysis that writes its arguments (for the runner tests)."""
    import argparse, json, pathlib, sys
    from data import fake_data  # noqa: F401  (makes data/fake.csv an input)


    def main(argv=None):
        p = argparse.ArgumentParser()
        p.add_argument("--out")
        p.add_argument("--draws")
        p.add_argument("--quiet", action="store_true")
        a = p.parse_args(argv)
        out = pathlib.Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "statements.json").write_text(json.dumps({"argv": sys.argv[1:], "provenance": {"seed": 1}}))
        return 0


    if __name__ == "__main__":
        raise SystemExit(main())
    ''')
SUBCOMMAND = textwrap.dedent('''\
    """A stub with a subcommand whose outputs land in OUT/summary (like analyses.simulation)."""
    import argparse, json, pathlib
    from analyses.report.entry import ReportEntry

    REPORT = ReportEntry(title="Sub study", args=("recovery",), outputs_in="summary")


    def main(argv=None):
        p = argparse.ArgumentParser()
        sub = p.add_subparsers(dest="study", required=True)
        s = sub.add_parser("recovery")
        s.add_argument("--out")
        s.add_argument("--quiet", action="store_true")
        a = p.parse_args(argv)
        out = pathlib.Path(a.out) / "summary"
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"study": a.study, "synthetic": True}))
        return 0


    if __name__ == "__main__":
        raise SystemExit(main())
    ''')
DATA_SOURCE = "SYNTHETIC study twin (stub: simulated children, not real ones)"
REFIT_NOTE = "re-fit 'first record per child': sampling diagnostics failed (R-hat 1.031 > 1.01 for 'sigma_tau')"


def _effect(mean: float) -> dict:
    return {"mean": mean, "median": mean, "sd": 2.5, "eti95_low": mean - 5, "eti95_high": mean + 5,
            "p_negative": 0.99, "p_positive": 0.01, "rope": 2.0, "p_in_rope": 0.1, "mid": 5.0, "p_beyond_mid": 0.8,
            "n_draws": 200}


def _interval(mean: float) -> dict:
    return {"mean": mean, "sd": 2.5, "eti95_low": mean - 5, "eti95_high": mean + 5}


def kinship_result() -> DidResult:
    """The kinship stub's statements.json, as the DiD analyses write it (a DidResult)."""
    results = []
    for p, m in (("sceptical", -9.5), ("neutral", -12.0)):
        agg = {"simple": _interval(m), "dynamic": {"overall": _interval(m), "by": [{"event_time": 1, **_interval(m)}]},
               "group": {"overall": _interval(m), "by": [{"cohort": 2015, **_interval(m)}]},
               "calendar": {"overall": _interval(m), "by": [{"period": 2016, **_interval(m)}]}}
        results.append(PriorResult(
            prior=p, prior_description=f"{p}: Normal(0, 1)", effect=_effect(m),
            probabilities={"p_negative": 0.99, "p_in_rope": 0.1},
            statements=[f"very likely (P = 0.99) that SofS reduced kinship care [{p}]",
                        "unlikely (P = 0.10) that the change was within ±2 pp"],
            relative={"mean": m / 60, "sd": 0.05, "eti95_low": m / 60 - 0.1, "eti95_high": m / 60 + 0.1},
            counterfactual_mean=62.0, aggregates=agg, diagnostics_ok=p != "neutral",
            estimands={k: {**_effect(m), "label": label, "p_same_sign_as_these_units": 0.99}
                       for k, label in (("these_units", "in the pilot LAs"),
                                        ("average_unit", "in the average LA (its mean effect)"),
                                        ("new_unit", "in a new LA like them (between-LA variation included)"))}))
    refit = {"family": "data definition", "effect": "att", "description": "each child's first record only",
             "mean": -11.0, "eti95_low": -16.0, "eti95_high": -6.0, "p_negative": 0.99, "p_positive": 0.01, "note": ""}
    return DidResult(
        analysis="kinship", title="Kinship care: stub",
        outcome=OutcomeInfo(name="kinship", label="kinship care", units="pp", likelihood="binomial",
                            population="children entering care", direction=1, rope=2.0, mid=5.0),
        data=DataInfo(source=DATA_SOURCE, data_hash="sha256:abc123", synthetic=True, n_records=1200.0, n_cells=40,
                      n_units=6, n_treated_units=3, cohorts=[2015, 2016], periods=[2012, 2013, 2014, 2015, 2016]),
        design=DesignInfo(effects="cohort_period", control="never", base="last", anticipation=0, unit_trends=False,
                          covariates=[], period_effects="hierarchical", unit_centred=True, exclude_settling=False),
        report=ReportedResult(effect=-12.63, units="pp", p_value=0.03, before_after="62% -> 49%",
                              grade="moderate strength evidence of decreased kinship care", source="RR1054, Table 8"),
        priors=[{"name": "sceptical", "mean": 0.0, "sd": 0.35, "scale": "log-odds ratio", "rationale": "no effect"},
                {"name": "neutral", "mean": 0.0, "sd": 1.0, "scale": "log-odds ratio", "rationale": "weak"}],
        results=results, event_study=[{"event_time": -2, "mean": 0.5, "eti95_low": -3.0, "eti95_high": 4.0}],
        event_study_statements=["unlikely (P = 0.20) that pre-trends exceed ±2 pp"],
        checks={"ppc_coverage_95": 0.96, "prior_draws": 100},
        frequentist=[Frequentist(method="LPM DiD", estimate=-13.7, se=5.9, ci95_low=-25.1, ci95_high=-2.2,
                                 p_value=0.02, n_clusters=6, units="pp")],
        robustness=Robustness(
            refits=[Refit("first record per child", "data definition", "each child's first record only", ["att"],
                          False, ["R-hat 1.031 > 1.01 for 'sigma_tau'"])],
            statements=["virtually certain (P = 1.00) that SofS reduced kinship care (first record per child)"],
            notes=[REFIT_NOTE],
            table=[{"analysis": "main (all LAs)", **refit, "family": "main", "diagnostics_ok": True},
                   {"analysis": "first record per child", **refit, "diagnostics_ok": False}],
            diagnostics_ok=False,
            leave_one_out=[{"left_out": f"Pilot {i}", "att_mean": -12 + i / 10} for i in range(3)]),
        diagnostics={"main (sceptical)": PASSING_FIT, "main (neutral)": FAILING_FIT},
        diagnostics_ok=False, provenance=PROVENANCE)


BROKEN = RUNNABLE.replace("    return 0\n", "    raise SystemExit(3)\n")
assert BROKEN != RUNNABLE


def _png(path: Path, label: str) -> None:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    ax.set_title(label)
    fig.savefig(path, dpi=40)
    plt.close(fig)


def _posterior_file(path: Path) -> None:
    rng = np.random.default_rng(1)
    shape = (2, 100)
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=shape)),
                                 "sigma": (("chain", "draw"), np.abs(rng.normal(size=shape))),
                                 "tau": (("chain", "draw", "pilot"), rng.normal(size=(*shape, 3)))},
                                coords={"pilot": ["P1", "P2", "P3"]}),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros(shape, bool))}),
        "log_prior": xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=shape)),
                                 "sigma": (("chain", "draw"), rng.normal(size=shape))}),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), rng.normal(size=(*shape, 4)))}),
    })
    tree.to_netcdf(path, engine="h5netcdf")


def make_root(root: Path) -> Path:
    """A stub repository: analyses kinship, published, costs, escalation (no outputs), fake, broken."""
    for pkg in ("analyses", "models", "data"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "models" / "did").mkdir()
    (root / "models" / "did" / "__init__.py").write_text('"""The DiD engine (stub)."""\n')
    (root / "models" / "did" / "model.py").write_text(MODEL_DOC)
    (root / "analyses" / "report").mkdir()   # the declarations' type, as in the real package
    (root / "analyses" / "report" / "__init__.py").write_text("")
    shutil.copy(Path(report.__file__).with_name("entry.py"), root / "analyses" / "report" / "entry.py")
    (root / "data" / "fake_data.py").write_text('"""Loads fake.csv."""\n')
    (root / "data" / "fake.csv").write_text("a,b\n1,2\n")
    entry = "from analyses.report.entry import ReportEntry\n\nREPORT = ReportEntry(title={!r}, order={}{})"
    stubs = {"kinship": ("Kinship care: stub.", "from models.did import model  # noqa: F401\n"
                         + entry.format("Kinship care", 20, ", table8='Rate of kinship care'")),
             "published": ("Published results: stub.", entry.format("Published results re-analysed", 10, "")),
             "costs": ("Costs: stub.", entry.format("Costs", 90, "")),
             "escalation": ("Escalation: stub.", entry.format("Re-referrals that escalate", 40,
                                                              ", table8='Rate of re-referrals that progress to CPP/LAC'"))}
    for name, (doc, imports) in stubs.items():
        (root / "analyses" / f"{name}.py").write_text(STUB.format(doc=doc, imports=imports))
    (root / "analyses" / "fake.py").write_text(RUNNABLE)
    (root / "analyses" / "broken.py").write_text(BROKEN)
    (root / "analyses" / "helper.py").write_text('"""Not an analysis (no main)."""\nX = 1\n')
    return root


def make_results(res: Path) -> Path:
    kin = res / "kinship"
    kin.mkdir(parents=True)
    kinship_result().write(kin / "statements.json")   # validates against the DiD result schema
    pd.DataFrame({"prior": ["sceptical", "neutral"], "att_pp_mean": [-9.5, -12.0],
                  "diagnostics_ok": [True, False]}).to_csv(kin / "summary.csv", index=False)
    pd.DataFrame({"event_time": [-2, 0, 1], "mean": [0.5, -8.0, -11.0]}).to_csv(kin / "event_study.csv", index=False)
    pd.DataFrame({"arm": ["pilot"], "observed": [49.0], "pred_mean": [50.0]}).to_csv(kin / "ppc_share.csv", index=False)
    for name in ("att_posterior", "event_study", "ppc_share"):
        _png(kin / f"{name}.png", name)
    _posterior_file(kin / "posterior_neutral.nc")
    (kin / "report.md").write_text("# Kinship care\n\nThe analysis's own page.\n")

    pub = res / "published"
    pub.mkdir()
    pd.DataFrame({
        "indicator": ["Rate of kinship care", "Rate of kinship care", "Rate of re-referrals"],
        "outcome": ["Kinship care (pp)", "Kinship care (pp)", "Re-referral within 6 months (pp)"],
        "report's grade": ["Moderate strength evidence of decreased kinship care rates"] * 2
        + ["No moderate or high strength evidence of a positive impact"],
        "printed": ["-12.63 pp (p=0.03)", "-12.63 pp (p=0.03)", "-9.8 pp (p=0.001)"],
        "prior": ["sceptical (moderate)", "neutral (moderate)", "neutral (moderate)"],
        "posterior mean (95% CrI)": ["-7.9 (-16.9 to +1.1) pp", "-12.0 (-23.1 to -0.9) pp", "-9.3 (-14.9 to -3.6) pp"],
        "P(|effect| > MID)": [0.6, 0.8, 0.98],
        "statement": ["extremely likely (P = 0.96) that SofS reduced the share of kinship care",
                      "extremely likely (P = 0.98) that SofS reduced the share of kinship care",
                      "virtually certain (P = 1.00) that SofS reduced re-referrals within 6 months"],
    }).to_csv(pub / "table8_reanalysed.csv", index=False)
    _png(pub / "table8_reanalysed.png", "table 8")
    (pub / "statements.json").write_text(json.dumps({"provenance": {**PROVENANCE, "data": "data/published"},
                                                     "pilots_diagnostics": PASSING_FIT}))

    costs = res / "costs"
    costs.mkdir()
    (costs / "summary.json").write_text(json.dumps({
        "question": "Net cost of Signs of Safety", "statements": {"saves": "unlikely (P = 0.20) that SofS saves money"},
        "report_verdict": "the report found no evidence of savings", "provenance": PROVENANCE}))
    _png(costs / "tornado.png", "tornado")
    return res


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    root = make_root(base / "root")
    res = make_results(base / "results")
    out = base / "out"
    code = report.main(["--root", str(root), "--results", str(res), "--out", str(out), "--reuse-only",
                        "--only", "kinship,published,costs,escalation,rereferral", "--quiet"])
    return code, out, (out / "report.html").read_text(), (out / "report.md").read_text()


def test_writes_html_markdown_and_json(rendered):
    code, out, page, md = rendered
    assert code == 0
    assert {"report.html", "report.md", "report.json", "figures"} <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "report.json").read_text())
    assert meta["analyses"]["kinship"]["status"] == "reused"
    assert meta["analyses"]["kinship"]["cache"] == "none"   # no cache record in a hand-made folder
    for rel in meta["figures"]:
        assert (out / rel).is_file() and f"]({rel})" in md


def test_html_is_self_contained(rendered):
    _, out, page, _ = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    meta = json.loads((out / "report.json").read_text())
    assert len(sources) == len(meta["figures"])
    # the analysis figures and a trace/rank plot drawn from the saved posterior are all there
    assert any("trace_rank_posterior_neutral" in f for f in meta["figures"])
    assert any(f.endswith("kinship/att_posterior.png") for f in meta["figures"])


def test_failing_diagnostics_flagged_at_the_top(rendered):
    _, out, page, md = rendered
    flag = page.index('id="failing-diagnostics"')
    assert flag < page.index('id="headline-table"')
    top = page[flag:page.index('id="headline-table"')]
    assert "FAILING DIAGNOSTICS" in top and "kinship" in top and "la_effect" in top
    assert "published" not in top.split("Missing analyses")[0]   # its fit passed
    assert md.index("FAILING DIAGNOSTICS") < md.index("## Table 8 re-analysed")
    meta = json.loads((out / "report.json").read_text())
    assert [f["analysis"] for f in meta["failures"]] == ["kinship", "kinship"]   # its neutral fit and one re-fit
    # the appendix highlights the failing cell
    assert re.search(r'<td class="num bad">1\.054</td>', page)


def test_failing_fit_and_refit_are_named_by_analysis_and_name(rendered):
    _, out, page, md = rendered
    top = page[page.index('id="failing-diagnostics"'):page.index('id="headline-table"')]
    assert ("Kinship care: fit &#x27;main (neutral)&#x27; failed R-hat and bulk ESS (R-hat 1.054 &gt; 1.01 "
            "for &#x27;la_effect&#x27;") in top
    # the robustness re-fit, by the analysis's title and the re-fit's name (not a JSON path), with its problems
    assert ("Kinship care: robustness re-fit &#x27;first record per child&#x27; failed R-hat "
            "(R-hat 1.031 &gt; 1.01 for &#x27;sigma_tau&#x27;)") in top
    assert "robustness/" not in top and "statements.json" not in top and "diagnostics_ok" not in top
    assert "- Kinship care: robustness re-fit 'first record per child' failed R-hat" in md
    meta = json.loads((out / "report.json").read_text())
    assert [f["where"] for f in meta["failures"]] == ["fit 'main (neutral)'", "robustness re-fit 'first record per child'"]
    assert meta["failures"][1]["text"] == "Kinship care: robustness re-fit 'first record per child' failed R-hat"
    assert meta["unreadable"] == {}
    # the appendix lists every fit by name and the re-fits with their verdicts
    app = page[page.index('id="diagnostics-kinship"'):page.index('id="reproducibility"')]
    assert "Fit: main (sceptical)" in app and "Fit: main (neutral)" in app
    assert "Robustness re-fits" in app and '<td class="bad">FAILED</td>' in app


def test_missing_analyses_are_listed(rendered):
    _, out, page, md = rendered
    missing = page[page.index('id="missing"'):]
    missing = missing[:missing.index("</div>")]
    assert "rereferral: not built yet" in missing
    assert "escalation: no saved outputs" in missing
    assert "fake: not selected" in missing and "broken: not selected" in missing
    assert "helper" not in missing   # a module without main() is not an analysis
    assert "rereferral: not built yet" in md
    meta = json.loads((out / "report.json").read_text())
    assert meta["missing"] == ["rereferral"]
    assert meta["analyses"]["escalation"]["status"] == "no outputs"


def test_headline_is_a_compact_table_with_a_forest_figure(rendered):
    _, out, page, md = rendered
    meta = json.loads((out / "report.json").read_text())
    rows = meta["headline"]
    kin = [r for r in rows if r["Outcome"] == "Rate of kinship care"]
    # the printed numbers re-analysed (analyses.published), one row per prior, with the report's estimate and grade
    pub = [r for r in kin if "analyses.published" in r["Source"]]
    assert [r["Prior"] for r in pub] == ["sceptical (moderate)", "neutral (moderate)"]
    assert pub[1]["Posterior mean"] == -12.0 and pub[1]["95% interval"] == "-23.1 to -0.9 pp"
    assert pub[1]["The report's grade"] == "Moderate strength evidence of decreased kinship care rates"
    # our model of the data: read through DidResult, one row per named prior
    ours = [r for r in kin if "analyses.kinship" in r["Source"]]
    assert all("[SYNTHETIC DATA]" in r["Source"] for r in ours) and [r["Prior"] for r in ours] == ["sceptical", "neutral"]
    did = kinship_result()
    e = did.result("neutral").effect
    assert ours[1]["Posterior mean"] == e["mean"] and ours[1]["95% interval"] == "-17.0 to -7.0 pp"
    assert ours[1]["The report's estimate"] == did.report.describe()
    assert ours[1]["The report's grade"] == did.report.grade
    assert ours[1]["statements"] == did.result("neutral").statements
    assert report.headline_statements(did) == report.headline_statements(did.to_dict())
    # every Table 8 indicator has rows, analysed or not
    assert set(report.TABLE8_INDICATORS) <= {r["Outcome"] for r in rows}
    rr = [r["Source"] for r in rows if r["Outcome"] == "Rate of re-referrals"]
    assert "analyses.rereferral: not in this report (see the missing analyses)" in rr
    assert any("Costs" in r["Outcome"] for r in rows)   # another analysis recording the report's verdict
    # the compact table: numbers in cells (no wall of sentences), the sentences folded below
    head = page[page.index('id="headline-table"'):page.index('id="status"')]
    table = head[:head.index("</table>")]
    assert "<th>P(benefit)</th>" in table and "<th>P(target met)</th>" in table and "very likely" not in table
    assert "<details><summary>The posterior statements behind these numbers</summary>" in head
    assert "very likely (P = 0.99) that SofS reduced kinship care [neutral]" in head.split("<details>", 1)[1]
    assert "figures/report/headline_forest.png" in meta["figures"]
    assert 'alt="Table 8 re-analysed: the intervals' in head
    assert "| Rate of kinship care |" in md and "](figures/report/headline_forest.png)" in md


def test_sections_mark_data_model_priors_sensitivity(rendered):
    _, out, page, md = rendered
    kin = page[page.index('id="analysis-kinship"'):page.index('id="analysis-costs"')]
    assert "SYNTHETIC DATA" in kin
    assert "logit p_c = alpha" in kin                 # model in notation, from the model module's docstring
    # the docstring's markup rendered: a section title, code, emphasis and formulas as MathML (no scripts)
    assert '<h5 class="note-title">Effects</h5>' in kin and "<code>mu_tau</code>" in kin and "<em>named</em>" in kin
    assert "<math" in kin and "<mtable>" in kin and "<code>pilots</code>" in kin
    assert ":math:" not in page and ".. math::" not in page and "``" not in page
    assert "Named priors" in kin and "log-odds ratio" in kin
    assert "frequentist cross check" in kin
    sens = kin[kin.index("What would change the conclusion"):]
    assert "leave one LA out" in sens and "event_study.csv" in sens and "Under each named prior" in sens
    app = page[page.index('id="diagnostics-kinship"'):]
    assert "Power-scaling sensitivity" in app and "ppc_share.csv" in app
    repro = page[page.index('id="reproducibility"'):]
    assert "sha256:abc123" in repro and "python -m analyses.kinship --out" in repro and "6.4.0" in repro


def test_did_result_is_read_typed(rendered, tmp_path):
    _, out, page, md = rendered
    res = make_results(tmp_path / "results")
    root = make_root(tmp_path / "root")
    o = report.read_outputs(root, report.info_for("kinship", root), res / "kinship",
                            report.RunRecord("kinship", "reused"))
    assert isinstance(o.did, DidResult) and o.did_file == "statements.json" and not o.did_error
    assert is_did_result(o.main) and report.is_synthetic(o) is True and report.data_label(o) == DATA_SOURCE
    assert [w for w, _ in report.diagnostic_fits(o)] == ["main (sceptical)", "main (neutral)"]
    # the section shows the typed fields: data.source (not provenance.data), the report's result, the
    # neutral prior's estimate and interval, the robustness statements
    kin = page[page.index('id="analysis-kinship"'):page.index('id="analysis-costs"')]
    assert DATA_SOURCE.replace("'", "&#x27;") in kin
    assert ("“moderate strength evidence of decreased kinship care” [-12.63 pp (62% -&gt; 49%), p = 0.03]"
            in kin)
    assert "neutral: -12.0 (-17.0 to -7.0); very likely (P = 0.99) that SofS reduced kinship care [neutral]" in kin
    assert "virtually certain (P = 1.00) that SofS reduced kinship care (first record per child)" in kin
    assert "Named priors" in kin and "Posterior probabilities per named prior" in kin
    verdict = report.report_verdict(o.did)
    assert verdict == report.report_verdict(o.did.to_dict()) and verdict.startswith("“moderate strength")


def test_invalid_did_result_is_an_error_of_its_analysis(tmp_path):
    root = make_root(tmp_path / "root")
    kin = tmp_path / "results" / "kinship"
    kin.mkdir(parents=True)
    doc = kinship_result().to_dict()
    doc["results"][1]["effect"]["mean"] = "-12.0"     # a string where the schema wants a number
    assert is_did_result(doc)
    (kin / "statements.json").write_text(json.dumps(doc))
    args = ["--root", str(root), "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"),
            "--reuse-only", "--only", "kinship", "--quiet"]
    assert report.main(args) == 0                     # the report is written, not crashed
    meta = json.loads((tmp_path / "out" / "report.json").read_text())
    err = meta["unreadable"]["kinship"]
    assert "statements.json" in err and "field results/1/effect/mean" in err and "is not of type" in err
    page = (tmp_path / "out" / "report.html").read_text()
    top = page[page.index('id="failing-diagnostics"'):page.index('id="headline-table"')]
    assert "RESULTS THAT COULD NOT BE READ" in top and "kinship: statements.json" in top
    assert "field results/1/effect/mean" in top
    ours = [r for r in meta["headline"] if r["Outcome"] == "Rate of kinship care" and "analyses.kinship" in r["Source"]]
    assert len(ours) == 1 and ours[0]["Source"].startswith("analyses.kinship: results not read")
    assert "results/1/effect/mean" in ours[0]["Source"] and ours[0]["Posterior mean"] is None
    assert "RESULTS NOT READ" in page and "-12.0 (-17.0 to -7.0)" not in page   # nothing guessed from the bad file
    assert report.main([*args, "--strict"]) == 1
    with pytest.raises(report.ResultSchemaError, match="results/1/effect/mean"):
        report.headline_statements(doc)


def test_bad_only_name_exits_2(tmp_path, capsys):
    code = report.main(["--root", str(make_root(tmp_path / "root")), "--results", str(tmp_path / "r"),
                        "--only", "nonsense", "--reuse-only", "--quiet"])
    assert code == 2
    assert "valid:" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report").exists()


def test_find_failures_in_any_shape():
    doc = {"a": {"diagnostics": {"fit1": {"ok": False, "problems": ["x"]}, "fit2": {"ok": True}}},
           "b": [{"prior": "neutral", "diagnostics_ok": False}],
           "c": {"ok": False}}   # an 'ok' that is not about diagnostics
    found = report.find_failures(doc)
    assert ("a/diagnostics/fit1", ["x"]) in found
    assert ("b/neutral/diagnostics_ok", []) in found
    assert all(not w.startswith("c") for w, _ in found)


def test_runs_caches_and_reruns_when_inputs_change(tmp_path):
    root = make_root(tmp_path / "root")
    res = tmp_path / "results"

    def go(*extra: str) -> dict:
        assert report.main(["--root", str(root), "--results", str(res), "--only", "fake,broken", "--quiet",
                            *extra]) == 0
        return json.loads((res / "report" / "report.json").read_text())["analyses"]

    first = go("--quick")
    assert first["fake"]["status"] == "ran"
    argv = json.loads((res / "fake" / "statements.json").read_text())["argv"]
    assert argv[argv.index("--draws") + 1] == "200" and "--tune" not in argv   # only flags it accepts
    assert first["broken"]["status"] == "failed" and "exit status 3" in first["broken"]["detail"]
    assert "Analyses that failed to run" in (res / "report" / "report.html").read_text()
    assert go("--quick")["fake"]["status"] == "reused"
    rerun = go()["fake"]                                   # arguments changed (no --quick)
    assert rerun["status"] == "ran" and "arguments (--draws 200 -> none)" in rerun["detail"]
    (root / "data" / "fake.csv").write_text("a,b\n1,3\n")
    stale = go("--reuse-only")["fake"]
    assert stale["status"] == "reused" and stale["cache"] == "stale"
    assert "data/fake.csv" in stale["detail"]
    assert go()["fake"]["status"] == "ran"                 # data changed
    (root / "analyses" / "fake.py").write_text(RUNNABLE + "\n# edited\n")
    assert go()["fake"]["status"] == "ran"                 # source changed
    assert go()["fake"]["status"] == "reused"
    assert report.main(["--root", str(root), "--results", str(res), "--only", "fake,broken", "--quiet",
                        "--strict"]) == 1                  # broken failed to run


def test_subcommand_and_outputs_subfolder(tmp_path):
    root = make_root(tmp_path / "root")
    (root / "analyses" / "sub.py").write_text(SUBCOMMAND)
    # the stub declares its own REPORT entry (subcommand, outputs sub-folder): no edit to the report
    res = tmp_path / "results"
    for expected in ("ran", "reused"):
        assert report.main(["--root", str(root), "--results", str(res), "--only", "sub", "--quiet"]) == 0
        meta = json.loads((res / "report" / "report.json").read_text())
        assert meta["analyses"]["sub"]["status"] == expected
        assert meta["analyses"]["sub"]["command"].startswith("python -m analyses.sub recovery --out ")
    assert (res / "sub" / "summary" / "summary.json").exists() and (res / "sub" / report.CACHE_FILE).exists()
    page = (res / "report" / "report.html").read_text()
    assert "SYNTHETIC DATA" in page and "Sub study (analyses.sub)" in page


# ---------------------------------------------------------------------- a real browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = r"""
<img id="control-broken" src="data:image/png;base64,AAAA" alt="negative control">
<script>
var RAW = /:math:`|:(func|class|mod):`|``|\.\. math::|\*\*\S|\\(frac|sigma|mu|tau|alpha|operatorname)\b|&lt;|&gt;|&amp;|<\/?(p|br|div|td)>/g;
function emptySections() {
  // a heading (h2-h4) followed by nothing but the next heading of the same or a higher level is empty
  var out = [];
  document.querySelectorAll("h2, h3, h4").forEach(function (h) {
    var level = +h.tagName[1], el = h.nextElementSibling, content = false;
    while (el && !(/^H[1-6]$/.test(el.tagName) && +el.tagName[1] <= level)) {
      if (!/^H[1-6]$/.test(el.tagName) && (el.textContent.trim() || el.querySelector("img"))) { content = true; break; }
      el = el.nextElementSibling;
    }
    if (!content) out.push(h.textContent);
  });
  return out;
}
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var head = document.querySelector("#headline-table");
  var out = {
    images: imgs.map(function (i) { return {id: i.id, ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0,
                                            w: i.naturalWidth, h: i.naturalHeight}; }),
    headline_rows: head ? head.querySelectorAll("tbody tr").length : -1,
    headline_caption: head && head.caption ? head.caption.textContent : "",
    empty_sections: emptySections(),
    raw_markup: (document.body.innerText.match(RAW) || []).slice(0, 5),
    math: document.querySelectorAll("math").length,
    flag: (document.querySelector("#failing-diagnostics") || {}).textContent || ""
  };
  var pre = document.createElement("pre");
  pre.id = "browser-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install Debian's chromium (.ci/install-chromium.sh)")
        pytest.skip("chromium is not installed (apt-get install chromium); this test fails instead of skipping in CI")
    return path


def test_report_renders_in_headless_chromium(rendered, tmp_path):
    chromium = _chromium()
    _, out, page, _ = rendered
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                               "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"chromium did not render the page (exit {proc.returncode}): {proc.stderr[-2000:]}"
    import html as _html

    result = json.loads(_html.unescape(match.group(1)))
    images = result["images"]
    report_images = [i for i in images if i["id"] != "control-broken"]
    meta = json.loads((out / "report.json").read_text())
    assert len(report_images) == len(meta["figures"]) > 0
    assert all(i["ok"] and i["w"] > 0 for i in report_images), [i for i in report_images if not i["ok"]]
    assert [i["ok"] for i in images if i["id"] == "control-broken"] == [False]   # the check can fail
    assert result["headline_rows"] >= len(report.TABLE8_INDICATORS)
    assert "Table 8 re-analysed" in result["headline_caption"]
    assert "FAILING DIAGNOSTICS" in result["flag"]
    assert all(i["w"] >= 50 and i["h"] >= 50 for i in report_images)   # real figures, not placeholders
    assert result["empty_sections"] == []
    assert result["raw_markup"] == []
    assert result["math"] >= 2                                          # formulas typeset as MathML


def test_browser_checks_can_fail(tmp_path):
    """The empty-section and raw-markup probes report a page that has both."""
    chromium = _chromium()
    page = ("<html><body><h2>Full</h2><p>text</p><h2>Empty</h2><h2>Raw</h2><p>:math:`x` and ``code``</p>"
            + PROBE + "</body></html>")
    probe = tmp_path / "bad.html"
    probe.write_text(page)
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                               "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    import html as _html

    result = json.loads(_html.unescape(re.search(r'<pre id="browser-check">(.*?)</pre>', proc.stdout, re.S).group(1)))
    assert result["empty_sections"] == ["Empty"]
    assert ":math:`" in result["raw_markup"] and "``" in result["raw_markup"]


def test_strict_fails_when_only_a_robustness_refit_fails(tmp_path, capsys):
    """``--strict`` counts every fit: a result whose main fits pass but one robustness re-fit
    failed exits with the diagnostics code."""
    from dataclasses import replace as dc_replace

    from analyses import did_runner

    res = kinship_result()
    res = dc_replace(res, diagnostics={"main (sceptical)": PASSING_FIT}, diagnostics_ok=True)
    assert res.diagnostics_ok and not res.robustness.diagnostics_ok and not res.all_ok

    class _Run:   # what finish() reads: the plan's strictness and the result, with writing and printing stubbed
        plan = type("P", (), {"strict": True})()
        result = res

    saved = did_runner.write_outputs, did_runner.print_headline
    did_runner.write_outputs = did_runner.print_headline = lambda run: None
    try:
        assert did_runner.finish(_Run()) == did_runner.EXIT_DIAGNOSTICS
        _Run.result = dc_replace(res, robustness=dc_replace(res.robustness, diagnostics_ok=True))
        assert did_runner.finish(_Run()) == did_runner.EXIT_OK
    finally:
        did_runner.write_outputs, did_runner.print_headline = saved

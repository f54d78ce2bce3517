"""The headline, "Table 8 re-analysed": one compact row per outcome, source and prior.

Each row: posterior mean, 95% interval, P(benefit), P(target met), beside the report's estimate
and grade; the sentences behind the numbers are kept per row (shown folded below the table),
and a forest figure draws the same intervals. Rows come from the typed DiD results of the
analyses that declare a Table 8 indicator (``ReportEntry.table8``) and from
``analyses.published``'s ``table8_reanalysed`` table (the printed numbers re-analysed).
"""

from __future__ import annotations

import math
import re

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from analyses.report.entry import TABLE8, TABLE8_INDICATORS
from analyses.report.readers import Outputs, _num, headline_statements, is_synthetic, report_verdict

COLUMNS = ("Outcome", "Source", "Prior", "Posterior mean", "95% interval", "P(benefit)", "P(target met)",
           "The report's estimate", "The report's grade")
_EST = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*\(\s*([+-]?\d+(?:\.\d+)?)\s+to\s+([+-]?\d+(?:\.\d+)?)\s*\)\s*(.*)$")


@dataclass
class HeadlineRow:
    outcome: str
    source: str
    prior: str = ""
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    units: str = ""
    p_benefit: float | None = None
    p_target: float | None = None
    report_estimate: str = ""
    report_grade: str = ""
    synthetic: bool | None = None
    statements: list[str] = field(default_factory=list)

    @property
    def interval(self) -> str:
        if _num(self.low) and _num(self.high):
            return f"{self.low:+.1f} to {self.high:+.1f}" + (f" {self.units}" if self.units else "")
        return "–"

    def cells(self) -> dict[str, Any]:
        return {"Outcome": self.outcome, "Source": self.source, "Prior": self.prior or "–",
                "Posterior mean": round(self.mean, 2) if _num(self.mean) else None,
                "95% interval": self.interval, "P(benefit)": _p(self.p_benefit), "P(target met)": _p(self.p_target),
                "The report's estimate": self.report_estimate or "–", "The report's grade": self.report_grade or "–"}

    def display(self) -> dict[str, str]:
        """The cells as shown: signed means, probabilities to two decimals ("<0.01" / ">0.99")."""
        c = self.cells()
        c["Posterior mean"] = f"{self.mean:+.1f}" if _num(self.mean) else "–"
        for col in ("P(benefit)", "P(target met)"):
            p = c[col]
            c[col] = "–" if p is None else "<0.01" if p < 0.005 else ">0.99" if p > 0.995 else f"{p:.2f}"
        return c

    def to_dict(self) -> dict:
        return {**self.cells(), **{k: v for k, v in asdict(self).items() if k not in ("outcome", "source", "prior")}}


def _p(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return round(x, 3) if math.isfinite(x) else None


def _tag(o: Outputs) -> str:
    return {True: " [SYNTHETIC DATA]", False: " [REAL DATA]", None: ""}[is_synthetic(o)]


def did_rows(indicator: str, o: Outputs) -> list[HeadlineRow]:
    """One row per named prior of a DiD analysis's typed result."""
    did = o.did
    src = f"model of the data (analyses.{o.name}){_tag(o)}"
    estimate = grade = ""
    if did.report is not None:
        try:
            estimate = did.report.describe()
        except (TypeError, ValueError) as err:
            estimate = f"not readable: {err}"
        grade = did.report.grade
    rows = []
    direction = did.outcome.direction
    for r in did.results:
        e, probs = r.effect, r.probabilities
        benefit = probs.get("p_programme_direction")
        if benefit is None and direction:
            benefit = e.get("p_positive") if direction > 0 else e.get("p_negative")
        rows.append(HeadlineRow(indicator, src, r.prior, e.get("mean"), e.get("eti95_low"), e.get("eti95_high"),
                                did.outcome.units, benefit, probs.get("p_target_met"), estimate, grade,
                                did.synthetic, list(r.statements)))
    return rows


def published_rows(pub: Outputs) -> dict[str, list[HeadlineRow]]:
    """Rows of ``analyses.published``'s ``table8_reanalysed`` (by indicator)."""
    t8 = pub.tables.get("table8_reanalysed")
    if t8 is None and isinstance(pub.main.get("table8_reanalysed"), list):
        t8 = pd.DataFrame(pub.main["table8_reanalysed"])
    out: dict[str, list[HeadlineRow]] = {}
    if t8 is None or "indicator" not in t8.columns:
        return out

    def get(r: pd.Series, col: str) -> Any:
        v = r.get(col)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    multi = t8.groupby("indicator")["outcome"].nunique().to_dict() if "outcome" in t8.columns else {}
    for _, r in t8.iterrows():
        ind = str(r["indicator"])
        m = _EST.match(str(get(r, "posterior mean (95% CrI)") or ""))
        source = "printed numbers (analyses.published)"
        if multi.get(ind, 1) > 1 and get(r, "outcome"):
            source = f"printed numbers, {r['outcome']} (analyses.published)"
        printed = str(get(r, "printed") or "")
        stmt = str(get(r, "statement") or "")
        out.setdefault(ind, []).append(HeadlineRow(
            ind, source, str(get(r, "prior") or "").replace("-", "") or "",
            float(m.group(1)) if m else None, float(m.group(2)) if m else None, float(m.group(3)) if m else None,
            m.group(4).strip() if m else "", get(r, "P(benefit)"), get(r, "P(target met)"), printed,
            str(get(r, "report's grade") or ""), False, [stmt] if stmt else []))
    return out


def headline_summary(outputs: dict[str, Outputs]) -> list[HeadlineRow]:
    """Every headline row: the four Table 8 outcomes (always, analysed or not), then other
    analyses that record the report's own verdict."""
    pub = outputs.get("published")
    published = published_rows(pub) if pub is not None and pub.run.has_outputs else {}
    by_indicator = {o.info.table8: o for o in outputs.values() if o.info.table8}
    rows: list[HeadlineRow] = []
    indicators = list(TABLE8_INDICATORS) + [i for i in published if i not in TABLE8_INDICATORS]
    for ind in indicators:
        pubrows = published.get(ind, [])
        if not pubrows:
            why = ("analyses.published: not available in this report" if pub is None or not pub.run.has_outputs
                   else "printed numbers: not re-analysable")
            rows.append(HeadlineRow(ind, why))
        rows += pubrows
        o = by_indicator.get(ind)
        grade = next((r.report_grade for r in pubrows if r.report_grade), "")
        estimate = next((r.report_estimate for r in pubrows if r.report_estimate), "")
        if o is None:
            name = TABLE8.get(ind)
            rows.append(HeadlineRow(ind, f"analyses.{name}: not in this report (see the missing analyses)"
                                    if name else "no analysis of this outcome", report_estimate=estimate,
                                    report_grade=grade))
        elif not o.run.has_outputs:
            rows.append(HeadlineRow(ind, f"analyses.{o.name}: {o.run.status} ({o.run.detail})"))
        elif o.did_error:
            rows.append(HeadlineRow(ind, f"analyses.{o.name}: results not read: {o.did_file} {o.did_error}"))
        elif o.did is not None:
            rows += did_rows(ind, o)
        else:
            rows.append(HeadlineRow(ind, f"analyses.{o.name}{_tag(o)}", statements=headline_statements(o.main),
                                    report_estimate=report_verdict(o.main) or ""))
    for o in outputs.values():
        if o.info.table8 or o.name == "published" or not o.run.has_outputs or o.did_error:
            continue
        doc = o.did if o.did is not None else o.main
        verdict = report_verdict(doc)
        if not verdict:
            continue
        title = f"{o.info.title or o.name} (not in Table 8)"
        if o.did is not None:
            rows += [HeadlineRow(title, r.source, r.prior, r.mean, r.low, r.high, r.units, r.p_benefit, r.p_target,
                                 r.report_estimate, r.report_grade, r.synthetic, r.statements)
                     for r in did_rows(title, o)]
        else:
            rows.append(HeadlineRow(title, f"analyses.{o.name}{_tag(o)}", report_estimate=verdict,
                                    statements=headline_statements(doc)))
    return rows


def headline_rows(outputs: dict[str, Outputs]) -> pd.DataFrame:
    """The compact headline table (the columns of :data:`COLUMNS`)."""
    return display_frame(headline_summary(outputs))


def display_frame(rows: list[HeadlineRow]) -> pd.DataFrame:
    """The rows as shown: an outcome's name, the report's estimate and grade written once per group."""
    shown, last = [], {}
    for r in rows:
        cells = r.display()
        key = cells["Outcome"]
        for col in ("Outcome", "The report's estimate", "The report's grade"):
            if last.get(col) == (key, cells[col]):
                cells[col] = ""
            else:
                last[col] = (key, cells[col])
        shown.append(cells)
    return pd.DataFrame(shown, columns=list(COLUMNS))

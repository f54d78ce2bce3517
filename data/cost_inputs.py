"""Inputs of the cost model, each with where it comes from, and the loaders that check them.

Three kinds of input feed :mod:`models.cost_uncertainty`:

1. **The unit-cost table** (``data/unit_costs.csv``, or a YAML file with the same fields): one
   row per priced item with ``category, item, value, unit, price_year, distribution, low, high,
   source``. Users edit it; :func:`load_unit_costs` checks it and raises :class:`DataError`
   naming the file, row and column of the first bad cell.
2. **Quantities from the report** (:data:`INPUTS` with ``kind="report"``): each carries the
   sentence of DfE research report RR1054 (section 'Cost benefit', pp. 55-56) it transcribes.
3. **Explicit assumptions** (:data:`INPUTS` with ``kind="assumption"``): numbers the report does
   not give (children entering care per LA, the non-kinship placement mix, ...). They are
   labelled as assumptions everywhere they are printed; replace them with your own.

The published DiD estimates used when no posterior file is given are in
:data:`PUBLISHED_EFFECTS`; the price index used for inflation is :data:`DEFLATOR`.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.errors import DataError

REPORT = "DfE RR1054, 'Evaluation of MTM's Signs of Safety Pilots' (Baginsky et al., October 2020)"

# --------------------------------------------------------------------------------------------
# Price index
# --------------------------------------------------------------------------------------------

#: GDP deflator at market prices, financial years, labelled by the calendar year the financial
#: year starts in (2019 = 2019-20); index 2019-20 = 100.
DEFLATOR: dict[int, float] = {
    2014: 91.4, 2015: 91.9, 2016: 93.9, 2017: 95.6, 2018: 97.7, 2019: 100.0,
    2020: 105.2, 2021: 105.5, 2022: 111.0, 2023: 118.7, 2024: 122.8,
}  # fmt: skip

DEFLATOR_SOURCE = (
    "HM Treasury 'GDP deflators at market prices, and money GDP' (financial years, from ONS series "
    "L8GG), rebased to 2019-20 = 100. The embedded values are rounded year-on-year changes "
    "transcribed for this toolkit without access to the release: check them against the latest "
    "HM Treasury table before publishing, or pass your own series with --deflator "
    "(CSV with columns year,index)."
)

# --------------------------------------------------------------------------------------------
# The unit-cost table
# --------------------------------------------------------------------------------------------

UNIT_COST_COLUMNS = ("category", "item", "value", "unit", "price_year", "distribution", "low", "high", "source")
CATEGORIES = ("grant", "staff", "training", "placement", "process")
DISTRIBUTIONS = ("fixed", "lognormal", "uniform", "pert")

#: Every item the model prices, with the category its row must carry.
UNIT_COST_ITEMS: dict[str, str] = {
    "grant_per_la": "grant",
    "staff_salary": "staff",
    "manager_salary": "staff",
    "tns_per_training_day": "training",
    "in_house_foster_week": "placement",
    "agency_foster_week": "placement",
    "residential_week": "placement",
    "kinship_week": "placement",
    "referral": "process",
    "assessment": "process",
}

DEFAULT_UNIT_COSTS = Path(__file__).resolve().parent / "unit_costs.csv"


@dataclass(frozen=True)
class UnitCost:
    """One row of the unit-cost table, in the money of its own ``price_year``.

    ``distribution`` is how the value is uncertain: ``fixed`` (exactly ``value``), ``lognormal``
    (median ``value``, ``low``-``high`` a 95% range), ``uniform`` (between ``low`` and ``high``)
    or ``pert`` (minimum ``low``, most likely ``value``, maximum ``high``).
    """

    category: str
    item: str
    value: float
    unit: str
    price_year: int
    distribution: str
    low: float | None
    high: float | None
    source: str


def _read_unit_cost_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError("file not found", file=path)
    suffix = path.suffix.lower()
    try:
        if suffix in {".yaml", ".yml"}:
            import yaml

            with open(path) as f:
                loaded = yaml.safe_load(f)
            if isinstance(loaded, dict) and "unit_costs" in loaded:
                loaded = loaded["unit_costs"]
            if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
                raise DataError("a YAML unit-cost table must be a list of rows (mappings), "
                                "optionally under the key 'unit_costs'", file=path)
            frame = pd.DataFrame(loaded)
        elif suffix in {".csv", ".txt"}:
            frame = _read_csv_rows(path)
        else:
            raise DataError(f"unknown file type '{suffix}' (use .csv, .yaml or .yml)", file=path)
    except DataError:
        raise
    except Exception as err:  # parser errors from pandas / yaml
        raise DataError(f"cannot be read as a table: {err}", file=path) from None
    if frame.empty:
        raise DataError(f"the table has no data rows (columns needed: {list(UNIT_COST_COLUMNS)})", file=path, row=1,
                        column=UNIT_COST_COLUMNS[0])
    return frame


def _read_csv_rows(path: Path) -> pd.DataFrame:
    """A CSV as strings, with file, row and column for every structural problem.

    Row numbers are 1-based data rows (the header is row 0). A row with fewer fields than the
    header (a truncated line) gets blanks, which the validator then names; a row with more
    fields, an unterminated quote, bytes that are not UTF-8 or an empty file are errors here.
    """
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (byte {err.start})", file=path, row=0, column=UNIT_COST_COLUMNS[0]) from None
    lines = text.splitlines()
    if not text.strip():
        raise DataError(f"the file is empty: it needs a header with columns {list(UNIT_COST_COLUMNS)} and one row "
                        "per item", file=path, row=0, column=UNIT_COST_COLUMNS[0])
    reader = csv.reader(lines, strict=True, skipinitialspace=True)
    records: list[list[str]] = []
    try:
        header = [h.strip() for h in next(reader)]
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            row = len(records) + 1
            if len(fields) > len(header):
                raise DataError(f"row has {len(fields)} fields but the header has {len(header)} (an unquoted comma?)",
                                file=path, row=row, column=header[-1] if header else UNIT_COST_COLUMNS[0])
            records.append(fields + [""] * (len(header) - len(fields)))
    except csv.Error as err:
        raise DataError(f"malformed CSV ({err}; an unterminated quote?)", file=path, row=len(records) + 1,
                        column=UNIT_COST_COLUMNS[0]) from None
    dup = [h for h in header if header.count(h) > 1]
    if dup:
        raise DataError(f"column '{dup[0]}' appears more than once in the header", file=path, row=0, column=dup[0])
    return pd.DataFrame(records, columns=header, dtype=object)


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _number(value: Any, *, row: int, column: str, file: Path | None) -> float:
    try:
        x = float(str(value).replace(",", "").replace("£", "").strip())
    except ValueError:
        raise DataError(f"'{value}' is not a number", file=file, row=row, column=column) from None
    if not math.isfinite(x):
        raise DataError(f"'{value}' is not a finite number", file=file, row=row, column=column)
    if x < 0:
        raise DataError(f"negative cost {x:g}: costs must be >= 0", file=file, row=row, column=column)
    return x


def validate_unit_costs(frame: pd.DataFrame, *, file: Path | None = None,
                        deflator: dict[int, float] | None = None) -> dict[str, UnitCost]:
    """Check a unit-cost table and return its rows keyed by item.

    Raises :class:`DataError` (file, 1-based row, column) for: a missing column, an unknown
    category or item, an item under the wrong category, a duplicated item, a missing or
    non-numeric value, a negative cost, a missing price year or one outside the deflator's
    years, an unknown distribution, a range that does not contain the value, a missing source,
    and (without a row) any item the model needs that the table lacks.
    """
    deflator = DEFLATOR if deflator is None else deflator
    missing_cols = [c for c in UNIT_COST_COLUMNS if c not in frame.columns]
    if missing_cols:
        raise DataError(f"missing required column(s) {missing_cols} in the header; found {list(frame.columns)}",
                        file=file, row=0, column=missing_cols[0])
    rows: dict[str, UnitCost] = {}
    for i, rec in enumerate(frame.to_dict(orient="records"), start=1):
        cell = {k: ("" if _blank(rec.get(k)) else str(rec.get(k)).strip()) for k in UNIT_COST_COLUMNS}
        if not cell["category"]:
            raise DataError("missing category", file=file, row=i, column="category")
        category = cell["category"].lower()
        if category not in CATEGORIES:
            raise DataError(f"unknown category '{cell['category']}'; valid categories: {list(CATEGORIES)}",
                            file=file, row=i, column="category")
        item = cell["item"]
        if item not in UNIT_COST_ITEMS:
            raise DataError(f"unknown item '{item}'; valid items: {list(UNIT_COST_ITEMS)}",
                            file=file, row=i, column="item")
        if UNIT_COST_ITEMS[item] != category:
            raise DataError(f"item '{item}' belongs to category '{UNIT_COST_ITEMS[item]}', not '{category}'",
                            file=file, row=i, column="category")
        if item in rows:
            raise DataError(f"item '{item}' appears more than once", file=file, row=i, column="item")
        if not cell["value"]:
            raise DataError("missing value", file=file, row=i, column="value")
        value = _number(cell["value"], row=i, column="value", file=file)
        if not cell["price_year"]:
            raise DataError("missing price year: every cost needs the year its prices refer to "
                            "(financial year, e.g. 2019 for 2019-20)", file=file, row=i, column="price_year")
        try:
            year_f = float(cell["price_year"].split("-")[0])
        except ValueError:
            raise DataError(f"price year '{cell['price_year']}' is not a year", file=file, row=i,
                            column="price_year") from None
        if not year_f.is_integer() or int(year_f) not in deflator:
            raise DataError(f"price year '{cell['price_year']}' is outside the deflator's years "
                            f"{min(deflator)}-{max(deflator)}", file=file, row=i, column="price_year")
        dist = (cell["distribution"] or "fixed").lower()
        if dist not in DISTRIBUTIONS:
            raise DataError(f"unknown distribution '{cell['distribution']}'; valid: {list(DISTRIBUTIONS)}",
                            file=file, row=i, column="distribution")
        low = high = None
        if dist != "fixed":
            for col in ("low", "high"):
                if not cell[col]:
                    raise DataError(f"distribution '{dist}' needs a '{col}' value", file=file, row=i, column=col)
            low = _number(cell["low"], row=i, column="low", file=file)
            high = _number(cell["high"], row=i, column="high", file=file)
            if not low <= value <= high or not low < high:
                raise DataError(f"the range low={low:g} to high={high:g} must contain value={value:g} "
                                "and have low < high", file=file, row=i, column="low")
            if dist == "lognormal" and low <= 0:
                raise DataError("a lognormal range needs low > 0", file=file, row=i, column="low")
        if not cell["source"]:
            raise DataError("missing source: say where the number comes from (or 'ASSUMPTION: ...')",
                            file=file, row=i, column="source")
        rows[item] = UnitCost(category, item, value, cell["unit"], int(year_f), dist, low, high, cell["source"])
    missing = [item for item in UNIT_COST_ITEMS if item not in rows]
    if missing:
        raise DataError(f"the table lacks required item(s) {missing}: add a row for each", file=file,
                        row=len(frame) + 1, column="item")
    return rows


def load_unit_costs(path: Path | str | None = None, *, deflator: dict[int, float] | None = None) -> dict[str, UnitCost]:
    """Read and check the unit-cost table (default: the one shipped in ``data/``)."""
    path = DEFAULT_UNIT_COSTS if path is None else Path(path)
    frame = _read_unit_cost_file(path)
    return validate_unit_costs(frame, file=path, deflator=deflator)


def unit_costs_frame(costs: dict[str, UnitCost]) -> pd.DataFrame:
    """The unit-cost rows as a table (for writing next to the results)."""
    return pd.DataFrame([c.__dict__ for c in costs.values()])


def load_deflator(path: Path | str) -> dict[int, float]:
    """A user price index: CSV with columns ``year`` (financial year start) and ``index`` (> 0)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise DataError(f"cannot be read as a table: {err}", file=path) from None
    for col in ("year", "index"):
        if col not in frame.columns:
            raise DataError(f"missing required column '{col}'", file=path, column=col)
    out: dict[int, float] = {}
    for i, rec in enumerate(frame.to_dict(orient="records"), start=1):
        try:
            year = int(str(rec["year"]).split("-")[0])
        except ValueError:
            raise DataError(f"'{rec['year']}' is not a year", file=path, row=i, column="year") from None
        try:
            idx = float(rec["index"])
        except ValueError:
            raise DataError(f"'{rec['index']}' is not a number", file=path, row=i, column="index") from None
        if not (math.isfinite(idx) and idx > 0):
            raise DataError("a price index must be > 0", file=path, row=i, column="index")
        if year in out:
            raise DataError(f"year {year} appears more than once", file=path, row=i, column="year")
        out[year] = idx
    if not out:
        raise DataError("the table has no rows", file=path)
    return out


# --------------------------------------------------------------------------------------------
# Quantities from the report, and explicit assumptions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """A model input that is not a unit cost: its distribution and where it comes from.

    ``distribution`` names a family understood by :mod:`models.cost_uncertainty` and ``params``
    its parameters; ``kind`` is ``"report"`` (transcribed from RR1054, quoted in ``source``) or
    ``"assumption"`` (not in the report; replace with your own).
    """

    name: str
    label: str
    distribution: str
    params: dict[str, float]
    unit: str
    kind: str
    source: str

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        tag = "ASSUMPTION" if self.kind == "assumption" else "report"
        return f"{self.label}: {self.distribution}({args}) {self.unit} [{tag}] {self.source}"


_CB = "RR1054 'Cost benefit'"

INPUTS: dict[str, Input] = {i.name: i for i in [
    Input("grant_years", "Years the grant covers", "fixed", {"value": 2}, "years", "report",
          f"{_CB}: 'The Round 2 grant, allocated in October 2017 for 2 years, was £78,750 for each of the "
          "10 pilot authorities.'"),
    Input("internal_share_reported", "Internal funding, pilots that reported some", "uniform",
          {"low": 0.37, "high": 1.08}, "share of the grant", "report",
          f"{_CB}: 'Of the 5 pilots that reported additional internal money allocated specifically to SofS "
          "activity, the amount varied between 37 per cent and 108 per cent of the grant amount.'"),
    Input("internal_counts", "Pilots by internal-funding answer", "fixed",
          {"reported": 5, "none": 2, "unknown": 2}, "pilots", "report",
          f"{_CB}: 'Two pilots reported no additional internal funding for SofS activity.' (5 + 2 of 9; "
          "the remaining 2 did not say). The report does not say which numbered pilot gave which "
          "answer, so pilot labels here do not match the report's Pilot 1..9."),
    Input("internal_unknown_rule", "Internal funding, the 2 pilots that did not say", "mixture",
          {"p_none": 2 / 7}, "share of the grant", "assumption",
          "ASSUMPTION (overridable with --unknown-internal): like a pilot drawn from the 7 that answered: "
          "none with probability 2/7, otherwise uniform 37%-108% of the grant."),
    Input("staff_share", "Share of spend on staff", "beta", {"mean": 0.75, "concentration": 50}, "share",
          "report",
          f"{_CB}: 'authorities reporting that around 75 per cent of the overall spend on SofS was on staffing "
          "costs (including those involved in project management)'. Spread (sd about 0.06) is an assumption."),
    Input("staff_continuing", "Staff posts continuing after the grant", "beta", {"a": 18, "b": 5}, "share",
          "report",
          f"{_CB} ('Ongoing costs'): 'Of the 21 staff reported to be employed on SofS in 6 of the sites, 17 "
          "were expected to continue to be employed beyond the end of Round 2'. Beta(17+1, 4+1)."),
    Input("nonstaff_continuing", "Non-staff spend continuing after the grant", "uniform",
          {"low": 0.25, "high": 0.75}, "share", "assumption",
          f"ASSUMPTION; {_CB} says 'Many of the costs reported for implementation are expected to continue' "
          "(ongoing training for staff turnover, IT development) without amounts."),
    Input("management_days", "Management input per pilot over Round 2", "lognormal_mean_range",
          {"mean": 230, "low": 52, "high": 1118, "n": 6}, "days per pilot (2 years)", "report",
          f"{_CB}: 'over the 2-year period there had been an average of 230 days input from management staff "
          "across all grades, within a range of 52 to 1118 days per site' (6 pilots). Lognormal with mean 230 "
          "and log-sd = ln(1118/52) / 2.534 (expected range of 6 normal draws)."),
    Input("training_days_total", "Staff training days, all pilots", "dirichlet_split",
          {"total": 2550, "alpha": 6}, "staff days over Round 2", "report",
          f"{_CB}: '24 training sessions attended by 866 staff across the 9 pilots ... a total of 2,550 staff "
          "days across Round 2' (5-day: 176 staff, Family Finding: 245, 1-day: 445). The split across pilots "
          "is not given (Pilot 5: 405 days for 5-day and 1-day training alone): Dirichlet(6, ..., 6) split, an "
          "assumption."),
    Input("salary_oncost", "Employer on-costs on salaries", "uniform", {"low": 0.25, "high": 0.35},
          "share of salary", "assumption",
          "ASSUMPTION: employer National Insurance and pension on top of salary (PSSRU-style on-costs)."),
    Input("working_days", "Working days per year", "fixed", {"value": 220}, "days", "assumption",
          "ASSUMPTION: working days per full-time year, used to turn salaries into day costs."),
    Input("children_entering_care", "Children starting to be looked after per pilot per year",
          "lognormal_median_range", {"median": 200, "low": 90, "high": 450}, "children per year", "assumption",
          "ASSUMPTION (not in the report): about 31,000 children a year start to be looked after in England "
          "across about 150 LAs (DfE SSDA903 statistics, around 2019), so about 200 per LA; pilots range from "
          "small unitaries to large counties. Replace with your counts (--la-volumes)."),
    Input("closed_cases", "Cases closed as NFA or 'case closed' per pilot per year", "lognormal_median_range",
          {"median": 1500, "low": 600, "high": 3750}, "cases per year", "assumption",
          "ASSUMPTION (not in the report): the DiD population for re-referral was 'children whose case was "
          "designated as No further action or Case closed'; order of magnitude from CIN census volumes. "
          "Replace with your counts (--la-volumes)."),
    Input("weeks_in_placement", "Weeks in placement in the first 12 months of care", "uniform",
          {"low": 26, "high": 52}, "weeks", "assumption",
          "ASSUMPTION: the DiD 'took into account the first 12 months of a child's period of care'; the cost "
          "difference is counted for the weeks a child is placed in that year."),
    Input("non_kinship_mix", "Non-kinship placement mix (in-house foster, agency foster, residential)",
          "dirichlet", {"in_house": 0.55, "agency": 0.30, "residential": 0.15, "concentration": 30}, "shares",
          "assumption",
          "ASSUMPTION: approximate national mix of non-kinship placements (DfE children looked after "
          "statistics; about two thirds of unrelated foster placements in-house, one third agency)."),
    Input("onset_lag", "Onset lag before the effects change costs", "triangular",
          {"min": 0.0, "mode": 1.0, "max": 5.0}, "years from the start of the horizon", "assumption",
          "ASSUMPTION (overridable with --onset-lag MIN,MODE,MAX): the DiD measured the effects after a "
          "settling-in period that 'lasted up to 5 years for some pilots' (RR1054, DiD section), so the "
          "effects need not change costs from year 0; full effect from the lag on, none before, the share of "
          "a year after the lag counted."),
    Input("p_assessment", "Share of re-referrals that lead to an assessment", "beta", {"a": 12, "b": 8},
          "share", "assumption",
          "ASSUMPTION: each re-referral costs a referral plus, with this probability, an assessment."),
]}


@dataclass(frozen=True)
class PublishedEffect:
    """A published DiD estimate (percentage points) and its two-sided p value."""

    outcome: str
    estimate_pp: float
    p_value: float
    source: str
    verdict: str
    meaning: str = field(default="")

    @property
    def se_pp(self) -> float:
        """Standard error implied by the p value: ``|estimate| / z(1 - p/2)``."""
        from scipy.stats import norm

        return abs(self.estimate_pp) / float(norm.isf(self.p_value / 2))


PUBLISHED_EFFECTS: dict[str, PublishedEffect] = {
    "kinship": PublishedEffect(
        "kinship", -12.63, 0.03,
        "RR1054 'Likelihood of kinship care compared with non-kinship care': 'the effect detected is negative "
        "and significant at the 5 per cent level (p=0.03) ... SofS decreased the probability of a child going "
        "into kinship care rather than non-kinship care by 12.63 percentage points' (62% -> 49%).",
        "Moderate strength evidence of decreased kinship care rates (Table 8); 'would imply cost increases "
        "rather than cost savings' ('Cost benefit').",
        "percentage points of kinship (vs non-kinship) care in the first 12 months; negative = less kinship care",
    ),
    "rereferral": PublishedEffect(
        "rereferral", -9.8, 0.001,
        "RR1054 'Likelihood of a re-referral within 6 months': 'SofS significantly decreased the probability "
        "of re-referrals within 6 months of a previous referral by 9.8 percentage points (p=0.001)' "
        "(31% -> 21%).",
        "No moderate or high strength evidence of a positive impact (Table 8): serial correlation not "
        "accounted for, data quality concerns.",
        "percentage points of re-referral within 6 months; negative = fewer re-referrals",
    ),
}

REPORT_COST_VERDICT = (
    "RR1054 'Cost benefit': 'The individual-level DiD found that it was less likely a child would receive "
    "kinship care instead of non-kinship care through SofS, which would imply cost increases rather than cost "
    "savings. ... it was not possible to provide reliable estimates for any potential cost-savings.'"
)

# --------------------------------------------------------------------------------------------
# Posterior files and per-LA volumes
# --------------------------------------------------------------------------------------------


def load_population_draws(tree: Any) -> dict[str, np.ndarray] | None:
    r"""Mean effect and between-LA SD (pp) per posterior draw, chain-major like
    :func:`load_effect_draws`, from a DiD posterior with the unit-effect structure
    (:math:`\tau_\ell = \mu_\tau + \sigma_\tau z_\ell` on the logit scale).

    ``mu_pp`` is ``att_average`` (the g-computed effect at :math:`\mu_\tau`; when absent,
    :math:`100[\operatorname{expit}(\operatorname{logit} q_0 + \mu_\tau) - q_0]` with
    :math:`q_0` = ``counterfactual``/100); ``sigma_pp`` is :math:`\sigma_\tau \cdot 100\,\bar q
    (1 - \bar q)`, the logistic slope at :math:`\bar q = q_0 + \text{mu\_pp}/200` (midway
    between the untreated and treated rates); ``baseline_pp`` is ``counterfactual``. None when
    the posterior lacks ``mu_tau``, ``sigma_tau`` or ``counterfactual``.
    """
    post = tree["posterior"] if "posterior" in tree.children else None
    if post is None or not {"mu_tau", "sigma_tau", "counterfactual"} <= set(post.data_vars):
        return None

    def flat(name: str) -> np.ndarray:
        da = post[name]
        if set(da.dims) - {"chain", "draw"}:
            raise DataError(f"'{name}' must have dims (chain, draw) only", column=name)
        return np.asarray(da.transpose(*[d for d in ("chain", "draw") if d in da.dims]).values, float).ravel()

    q0 = np.clip(flat("counterfactual") / 100.0, 1e-9, 1 - 1e-9)
    if "att_average" in post.data_vars:
        mu_pp = flat("att_average")
    else:
        eta = np.log(q0 / (1 - q0)) + flat("mu_tau")
        mu_pp = 100.0 * (1.0 / (1.0 + np.exp(-eta)) - q0)
    qbar = np.clip(q0 + mu_pp / 200.0, 1e-9, 1 - 1e-9)
    return {"mu_pp": mu_pp, "sigma_pp": flat("sigma_tau") * 100.0 * qbar * (1 - qbar), "baseline_pp": 100.0 * q0}


def posterior_synthetic_flag(tree: Any) -> bool | None:
    """The ``synthetic`` attribute a DiD command stamps on its posterior file (``1``/``0``; see
    ``analyses.did_runner.write_outputs``), read from the file's root or its ``posterior``
    group; None for a file that does not say (older outputs, other tools)."""
    for node in (tree, tree["posterior"] if "posterior" in tree.children else None):
        if node is None:
            continue
        value = node.attrs.get("synthetic")
        if value is None:
            continue
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("1", "true", "yes"):
                return True
            if v in ("0", "false", "no"):
                return False
            continue
        try:
            return bool(int(np.asarray(value).ravel()[0]))
        except (TypeError, ValueError, IndexError):
            continue
    return None


def load_effect_draws(path: Path | str, *, var: str = "att") -> tuple[np.ndarray, Any]:
    """Posterior draws of ``var`` (dims chain, draw) from an ArviZ DataTree netCDF file.

    Returns the draws flattened chain-major (``chain 0 draw 0, chain 0 draw 1, ...``) and the
    tree itself (for sampling diagnostics).
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataError("posterior file not found", file=path)
    try:
        tree = xr.open_datatree(path)
    except Exception as err:
        raise DataError(f"cannot be read as an ArviZ netCDF file: {err}", file=path) from None
    if "posterior" not in tree.children:
        raise DataError("no 'posterior' group in the file", file=path, column="posterior")
    post = tree["posterior"]
    if var not in post.data_vars:
        raise DataError(f"the posterior has no variable '{var}' (found {sorted(post.data_vars)})",
                        file=path, column=var)
    da = post[var]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if extra:
        raise DataError(f"'{var}' must have dims (chain, draw) only; it also has {extra}", file=path, column=var)
    da = da.transpose(*[d for d in ("chain", "draw") if d in da.dims])
    draws = np.asarray(da.values, dtype=float).ravel()
    if draws.size == 0 or not np.all(np.isfinite(draws)):
        raise DataError(f"'{var}' must hold finite draws", file=path, column=var)
    return draws, tree


@dataclass(frozen=True)
class LAVolumes:
    """Per-LA inputs supplied by the user; ``nan`` means 'use the default distribution'."""

    las: tuple[str, ...]
    children_entering_care: np.ndarray
    closed_cases: np.ndarray
    internal_share: np.ndarray


def load_la_volumes(path: Path | str) -> LAVolumes:
    """Read ``la`` plus optional ``children_entering_care``, ``closed_cases``, ``internal_share``.

    Counts are per year; ``internal_share`` is internal funding as a share of the grant. Blank
    cells fall back to the model's default distribution for that LA.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise DataError(f"cannot be read as a table: {err}", file=path) from None
    if "la" not in frame.columns:
        raise DataError("missing required column 'la'", file=path, column="la")
    if frame.empty:
        raise DataError("the table has no rows", file=path)
    known = {"la", "children_entering_care", "closed_cases", "internal_share"}
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise DataError(f"unknown column(s) {unknown}; valid: {sorted(known)}", file=path, column=unknown[0])
    las = []
    cols = {c: np.full(len(frame), np.nan) for c in ("children_entering_care", "closed_cases", "internal_share")}
    for i, rec in enumerate(frame.to_dict(orient="records"), start=1):
        name = str(rec["la"]).strip()
        if not name:
            raise DataError("missing LA name", file=path, row=i, column="la")
        if name in las:
            raise DataError(f"LA '{name}' appears more than once", file=path, row=i, column="la")
        las.append(name)
        for c in cols:
            if c in rec and str(rec[c]).strip():
                try:
                    x = float(rec[c])
                except ValueError:
                    raise DataError(f"'{rec[c]}' is not a number", file=path, row=i, column=c) from None
                if not math.isfinite(x) or x < 0:
                    raise DataError(f"{c} must be a number >= 0", file=path, row=i, column=c)
                cols[c][i - 1] = x
    return LAVolumes(tuple(las), cols["children_entering_care"], cols["closed_cases"], cols["internal_share"])

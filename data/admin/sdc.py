"""Statistical disclosure control for every table (and figure) written from administrative data.

In the spirit of the secure research services' output rules (the ONS SRS / SDC handbook
"safe outputs" rules of thumb):

1. **No child-level rows or identifiers.** A table with an identifier-like column (CHILD,
   LAchildID, UPN, a date of birth, a postcode) is refused.
2. **Primary suppression.** Every count below ``threshold`` (default 10; zero is not suppressed
   unless asked, a structural zero reveals nothing) is replaced by a missing value. Counts a
   table implies are checked too: for a share ``y/n`` both ``y`` and ``n - y`` must reach the
   threshold, otherwise the share is suppressed (a 96% share of 50 reveals 2 children); a
   share whose denominator is suppressed is suppressed with it.
3. **Secondary disclosure (differencing) is refused.** Where a table carries totals (rows whose
   dimension value is ``"All"``, or totals published elsewhere and passed in), every suppressed
   cell is audited: its smallest and largest values consistent with the published cells, the
   totals and the suppression rule (a suppressed count lies between 1 and threshold - 1) are
   found by linear programming. If these pin it to a single whole number, the table would
   reveal it by subtraction, and :func:`protect_table` raises :class:`DisclosureError` rather
   than write it.

Model outputs (posterior summaries of parameters, intervals, probabilities) are not counts
and pass through; model files are stripped of their observed data (:func:`strip_idata`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError

DEFAULT_THRESHOLD = 10
TOTAL_LABEL = "All"
IDENTIFIER_COLUMNS = frozenset({
    "child", "child_id", "childid", "lachildid", "upn", "formerupn", "uln", "pupilmatchingrefanonymous",
    "dob", "personbirthdate", "expectedpersonbirthdate", "date_of_birth", "mc_dob", "home_post", "pl_post",
    "postcode", "urn", "nhs_number", "name",
})  # fmt: skip
DATA_GROUPS = ("observed_data", "constant_data")
#: predictive draws of the observed counts: a binomial draw never exceeds its cell's size, so over
#: many draws their maximum shows each cell's number of children; dropped like the data
PREDICTIVE_GROUPS = ("posterior_predictive", "prior_predictive")
#: nouns that make a number in a sentence a count of children or of their records
COUNT_NOUNS = ("children", "child", "records", "record", "referrals", "referral", "periods of care",
               "assessments", "assessment", "episodes", "rows", "young people", "cases")
_COUNT_IN_TEXT = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})*|\d+)(\s+(?:\w+\s+){0,2}?)(" + "|".join(COUNT_NOUNS) + r")\b")


class DisclosureError(DataError):
    """A table that would disclose small counts: refused (exit code 2, nothing written)."""


@dataclass(frozen=True)
class TableRule:
    """How to read a table's columns for disclosure control.

    Parameters
    ----------
    counts
        Columns holding counts of children (or records).
    shares
        Share column -> denominator count column; the share is ``numerator / denominator *
        share_scale`` (``share_scale`` 100 for percentages).
    complements
        Count column -> total column whose difference is also a count (``y`` -> ``n``).
    dims
        Dimension columns; a row with ``TOTAL_LABEL`` in one of them is a total over it.
    means
        Mean column -> count column it averages over: the mean is suppressed wherever that
        count is small (a mean over one child is that child's value).
    """

    counts: tuple[str, ...] = ()
    shares: Mapping[str, str] = field(default_factory=dict)
    complements: Mapping[str, str] = field(default_factory=dict)
    dims: tuple[str, ...] = ()
    means: Mapping[str, str] = field(default_factory=dict)
    share_scale: float = 100.0


@dataclass
class SdcReport:
    """What :func:`protect_table` suppressed (table row 1-based, column, reason)."""

    name: str
    suppressed: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def n_suppressed(self) -> int:
        return len(self.suppressed)


def check_identifiers(table: pd.DataFrame, name: str) -> None:
    """Refuse tables with identifier-like columns (never child-level rows in outputs)."""
    for c in table.columns:
        if str(c).strip().casefold() in IDENTIFIER_COLUMNS:
            raise DisclosureError(f"output table '{name}' has an identifier column '{c}': outputs may not contain "
                                  "child-level rows or identifiers", file=name, column=str(c))


def _implied_counts(table: pd.DataFrame, rule: TableRule) -> dict[str, np.ndarray]:
    """Every count the table shows or implies, by the column it lives in."""
    out: dict[str, np.ndarray] = {}
    for c in rule.counts:
        out[c] = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
    for share, denom in rule.shares.items():
        n = pd.to_numeric(table[denom], errors="coerce").to_numpy(dtype=float)
        s = pd.to_numeric(table[share], errors="coerce").to_numpy(dtype=float)
        out[share] = np.round(s * n / rule.share_scale)
    return out


def protect_table(table: pd.DataFrame, rule: TableRule = TableRule(), *, name: str = "table",
                  threshold: int = DEFAULT_THRESHOLD, suppress_zeros: bool = False,
                  published_totals: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, SdcReport]:
    """Suppress small counts in ``table`` and refuse it if a suppressed count is recoverable.

    Returns the protected copy (suppressed cells are missing) and a report. Raises
    :class:`DisclosureError` for identifier columns or a table whose totals (``"All"`` rows in a
    ``rule.dims`` column, or ``published_totals``: column -> grand total published elsewhere)
    would reveal a suppressed count by subtraction. ``threshold`` below 1 is a ``ValueError``.
    """
    if threshold < 1:
        raise ValueError(f"the disclosure threshold must be at least 1, got {threshold}")
    check_identifiers(table, name)
    for c in [*rule.counts, *rule.shares, *rule.shares.values(), *rule.complements, *rule.complements.values(),
              *rule.dims, *rule.means, *rule.means.values()]:
        if c not in table.columns:
            raise ValueError(f"table '{name}' has no column '{c}' named in its disclosure rule; "
                             f"columns are {list(table.columns)}")
    report = SdcReport(name)
    values = _implied_counts(table, rule)
    lo = 0 if suppress_zeros else 1

    def small(v: np.ndarray) -> np.ndarray:
        return np.isfinite(v) & (v >= lo) & (v < threshold)

    unsafe = {c: small(v) for c, v in values.items()}
    reasons: dict[str, np.ndarray] = {c: np.where(m, "count below threshold", "") for c, m in unsafe.items()}
    for c, total in rule.complements.items():
        comp = pd.to_numeric(table[total], errors="coerce").to_numpy(dtype=float) - values[c]
        hit = small(comp) & ~unsafe[c]
        unsafe[c] |= hit
        reasons[c] = np.where(hit, f"{total} minus {c} below threshold", reasons[c])
    for share, denom in rule.shares.items():
        n = pd.to_numeric(table[denom], errors="coerce").to_numpy(dtype=float)
        comp = small(n - values[share]) & ~unsafe[share]
        unsafe[share] |= comp
        reasons[share] = np.where(comp, "implied count of the complement below threshold", reasons[share])
        dn = unsafe.get(denom, small(n)) & ~unsafe[share]
        unsafe[share] |= dn
        reasons[share] = np.where(dn, f"denominator '{denom}' suppressed", reasons[share])
    for mean, denom in rule.means.items():
        n = pd.to_numeric(table[denom], errors="coerce").to_numpy(dtype=float)
        unsafe[mean] = unsafe.get(denom, small(n)).copy()
        reasons[mean] = np.where(unsafe[mean], f"mean over '{denom}' below threshold", "")
    out = table.copy()
    for c, mask in unsafe.items():
        if mask.any():
            out[c] = out[c].astype("float64" if pd.api.types.is_numeric_dtype(out[c]) else "object")
            out.loc[mask, c] = np.nan
            report.suppressed += [(int(i) + 1, c, str(reasons[c][i])) for i in np.flatnonzero(mask)]
    _audit(table, rule, values, unsafe, name=name, threshold=threshold, lo=lo, published_totals=published_totals or {})
    return out, report


# ------------------------------------------------------------------ secondary disclosure audit


def _constraints(table: pd.DataFrame, dims: Sequence[str]) -> list[tuple[int, list[int]]]:
    """(total row, its component rows) for every total the table carries over one dimension."""
    if not dims:
        return []
    d = table[list(dims)].astype(str).to_numpy()
    is_total = d == TOTAL_LABEL
    out = []
    for r in np.flatnonzero(is_total.any(axis=1)):
        for j in np.flatnonzero(is_total[r]):
            others = [k for k in range(len(dims)) if k != j]
            match = (d[:, others] == d[r, others]).all(axis=1) & ~is_total[:, j]
            members = np.flatnonzero(match).tolist()
            if members:
                out.append((int(r), members))
    return out


def _audit(table: pd.DataFrame, rule: TableRule, values: dict[str, np.ndarray], unsafe: dict[str, np.ndarray], *,
           name: str, threshold: int, lo: int, published_totals: Mapping[str, float]) -> None:
    cons = _constraints(table, rule.dims)
    for c, v in values.items():
        hidden = unsafe[c]
        if not hidden.any():
            continue
        equations: list[tuple[list[int], float]] = []   # (hidden rows, known right-hand side)
        interior = np.ones(len(table), dtype=bool)
        for total_row, members in cons:
            interior[total_row] = False
            rows = [*members, total_row]
            coef = {r: 1.0 for r in members}
            coef[total_row] = -1.0
            known = -sum(coef[r] * v[r] for r in rows if not hidden[r])
            unknown = {r: coef[r] for r in rows if hidden[r]}
            if unknown:
                equations.append((list(unknown.items()), known))
        if c in published_totals:
            rows = np.flatnonzero(interior)
            known = float(published_totals[c]) - sum(v[r] for r in rows if not hidden[r])
            unknown = [(int(r), 1.0) for r in rows if hidden[r]]
            if unknown:
                equations.append((unknown, known))
        if not equations:
            continue
        var = sorted({r for eq, _ in equations for r, _ in eq})
        pos = {r: i for i, r in enumerate(var)}
        a = np.zeros((len(equations), len(var)))
        b = np.zeros(len(equations))
        for k, (eq, rhs) in enumerate(equations):
            for r, coef in eq:
                a[k, pos[r]] = coef
            b[k] = rhs
        upper = [max(threshold - 1, lo) if small_cell else None
                 for small_cell in (np.isfinite(v[var]) & (v[var] < threshold))]
        bounds = [(lo, u) for u in upper]
        for i, r in enumerate(var):
            span = _range(a, b, bounds, i)
            if span is not None and np.floor(span[1] + 1e-6) - np.ceil(span[0] - 1e-6) < 1:
                dims = ", ".join(f"{d}={table[d].iloc[r]}" for d in rule.dims)
                raise DisclosureError(
                    f"output table '{name}' refused: the suppressed value in column '{c}' at row {r + 1}"
                    f"{' (' + dims + ')' if dims else ''} can be recovered by subtraction from the totals "
                    f"(it must be {int(round(span[0]))}); drop the totals or combine categories before writing",
                    file=name, row=r + 1, column=c)


def _range(a: np.ndarray, b: np.ndarray, bounds: list, i: int) -> tuple[float, float] | None:
    """Smallest and largest feasible value of variable ``i`` (None if the system is infeasible)."""
    from scipy.optimize import linprog

    cost = np.zeros(a.shape[1])
    out = []
    for sign in (1.0, -1.0):
        cost[:] = 0.0
        cost[i] = sign
        res = linprog(cost, A_eq=a, b_eq=b, bounds=bounds, method="highs")
        if res.status == 2:       # infeasible: the published numbers are inconsistent; nothing to pin
            return None
        if res.status == 3:       # unbounded
            out.append(np.inf * sign * -1)
            continue
        out.append(sign * res.fun)
    return (out[0], out[1])


# ------------------------------------------------------------------ figures and model files


def protect_counts(counts: Mapping[str, int], *, name: str, threshold: int = DEFAULT_THRESHOLD) -> dict[str, int | None]:
    """A dict of named counts with those below ``threshold`` replaced by None (for JSON/prose)."""
    return {k: (None if v is not None and 0 < v < threshold else v) for k, v in counts.items()}


def strip_idata(idata):
    """A copy of a fitted model's DataTree without its observed and constant data groups.

    Those groups hold the cell counts the model was fitted to (possibly 1 or 2 children per
    cell); the predictive groups go too (:data:`PREDICTIVE_GROUPS`: a draw is bounded by its
    cell's size). Posterior draws, sample statistics, priors and the log-likelihood by LA are kept.
    """
    import xarray as xr

    children = {k: v for k, v in idata.children.items() if k not in (*DATA_GROUPS, *PREDICTIVE_GROUPS)}
    out = xr.DataTree.from_dict({f"/{k}": v.to_dataset() for k, v in children.items()}, name=idata.name)
    out.attrs = dict(idata.attrs)
    return out


def protect_text(text: str, threshold: int = DEFAULT_THRESHOLD) -> str:
    """``text`` with every count of children or records below ``threshold`` (a number before
    one of :data:`COUNT_NOUNS`, e.g. "3 records left out") replaced by "fewer than N"."""
    def repl(m: re.Match) -> str:
        value = int(m.group(1).replace(",", ""))
        return m.group(0) if not 0 < value < threshold else f"fewer than {threshold}{m.group(2)}{m.group(3)}"

    return _COUNT_IN_TEXT.sub(repl, text)


def protect_folder(folder: Path, threshold: int = DEFAULT_THRESHOLD) -> list[str]:
    """:func:`protect_text` on every text output (CSV, Markdown, JSON, text) in ``folder``, the
    last step before an output folder from administrative data is committed. Returns the files
    changed."""
    changed = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix.lower() in {".csv", ".md", ".json", ".txt", ".html"}:
            text = path.read_text()
            safe = protect_text(text, threshold)
            if safe != text:
                path.write_text(safe)
                changed.append(path.name)
    return changed


class SdcGuard:
    """What an analysis calls on every table it writes (a no-op for synthetic data).

    >>> guard = SdcGuard(threshold=10)                   # or SdcGuard(None) for synthetic data
    >>> safe = guard.table("ppc_share", ppc_table, TableRule(counts=("n",), shares={"observed": "n"}))
    >>> idata = guard.idata(idata)                        # before idata.to_netcdf(...)
    """

    def __init__(self, threshold: int | None = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.reports: list[SdcReport] = []

    @property
    def active(self) -> bool:
        return self.threshold is not None

    def table(self, name: str, table: pd.DataFrame, rule: TableRule = TableRule(), **kw) -> pd.DataFrame:
        if not self.active:
            return table
        safe, report = protect_table(table, rule, name=name, threshold=self.threshold, **kw)
        self.reports.append(report)
        return safe

    def idata(self, idata):
        return strip_idata(idata) if self.active else idata

    def folder(self, folder: Path) -> list[str]:
        """Counts in sentences below the threshold, in every text file of ``folder``, replaced."""
        return protect_folder(folder, self.threshold) if self.active else []

    def summary(self) -> dict:
        return {"threshold": self.threshold,
                "suppressed_cells": {r.name: r.n_suppressed for r in self.reports}}

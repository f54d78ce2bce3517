"""The result of every DiD analysis as one typed object with a versioned JSON schema.

:class:`DidResult` holds the outcome and how it is read, the data source and its synthetic
flag, the design, the report's own result, one :class:`PriorResult` per named prior (the
headline effect, its probabilities and statements, the staggered aggregates ``simple``,
``dynamic``, ``group`` and ``calendar``), checks, diagnostics, the frequentist cross-check,
robustness, and provenance. Every analysis writes ``statements.json`` with
:meth:`DidResult.write`; every reader (the report) uses :meth:`DidResult.read`, which
validates the file against ``result_schema.json`` (:data:`SCHEMA_VERSION`) and says which
field is wrong when it does not match.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from models.serialize import jsonable

SCHEMA_NAME = "sofs-bayes/did-result"
SCHEMA_VERSION = "1.0.0"
SCHEMA_FILE = Path(__file__).with_name("result_schema.json")


@dataclass(frozen=True)
class ReportedResult:
    """The evaluation's own result for an outcome, with its provenance (None when a user's
    data have no published counterpart). ``effect`` is in ``units``; further reported effects
    in ``secondary`` as ``(label, effect, units, p value)``."""

    effect: float | None
    units: str
    p_value: float | None
    before_after: str
    grade: str
    source: str
    secondary: tuple[tuple[str, float, str, float | None], ...] = ()

    def describe(self) -> str:
        text = f"{self.effect:+.2f} {self.units}" if self.effect is not None else "no effect size printed"
        text += f" ({self.before_after})" if self.before_after else ""
        text += f", p = {self.p_value}" if self.p_value is not None else ""
        for label, value, units, p in self.secondary:
            text += f"; {label}: {value:+.2f} {units}" + (f", p = {p}" if p is not None else "")
        return text


@dataclass
class OutcomeInfo:
    name: str
    label: str
    units: str
    likelihood: str
    population: str = ""
    direction: int = 0
    rope: float = 0.0
    mid: float = 0.0
    target: float | None = None
    relative_target: float | None = None
    decimals: int = 2
    secondary: list[dict] = field(default_factory=list)   # the hurdle's same-day share: key, label, units


@dataclass
class DataInfo:
    source: str
    data_hash: str
    synthetic: bool
    n_records: float
    n_cells: int
    n_units: int
    n_treated_units: int
    cohorts: list[int]
    periods: list[int]
    notes: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)


@dataclass
class DesignInfo:
    effects: str
    control: str
    base: str
    anticipation: int
    unit_trends: bool
    covariates: list[str]
    period_effects: str
    unit_centred: bool
    exclude_settling: bool
    why: str = ""


@dataclass
class PriorResult:
    prior: str
    prior_description: str
    effect: dict                      # models.statements.EffectSummary on the reading scale
    probabilities: dict[str, float]
    statements: list[str]
    relative: dict                    # mean, sd, eti95 of the relative change
    counterfactual_mean: float
    aggregates: dict                  # simple, dynamic, group, calendar (models.did.summaries)
    diagnostics_ok: bool
    estimands: dict = field(default_factory=dict)   # these_units, average_unit, new_unit (models.did.model.ESTIMANDS)
    secondary: dict = field(default_factory=dict)
    reweighting: dict | None = None


@dataclass
class Frequentist:
    method: str
    estimate: float
    se: float
    ci95_low: float
    ci95_high: float
    p_value: float | None
    n_clusters: int
    units: str
    label: str = ""


@dataclass
class Refit:
    """One robustness re-fit: what it was, which effects it reports, whether every checked
    variable passed its diagnostics, and the problems when not."""

    name: str
    family: str
    description: str
    effects: list[str]
    diagnostics_ok: bool
    problems: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Robustness:
    refits: list[Refit] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    diagnostics_ok: bool = True
    sensitivity: dict = field(default_factory=dict)   # Rambachan-Roth: breakdowns, what they were computed on
    pretrends: dict = field(default_factory=dict)
    leave_one_out: list[dict] = field(default_factory=list)
    leave_one_out_summary: dict = field(default_factory=dict)


@dataclass
class DidResult:
    analysis: str
    title: str
    outcome: OutcomeInfo
    data: DataInfo
    design: DesignInfo
    report: ReportedResult | None
    priors: list[dict]
    results: list[PriorResult]
    event_study: list[dict]
    event_study_statements: list[str]
    checks: dict
    frequentist: list[Frequentist]
    robustness: Robustness
    diagnostics: dict
    diagnostics_ok: bool
    provenance: dict
    prior_check: list[dict] = field(default_factory=list)   # each named prior's promise on the reported scale
    truth: dict | None = None
    extra: dict = field(default_factory=dict)
    schema: str = SCHEMA_NAME
    schema_version: str = SCHEMA_VERSION

    @property
    def synthetic(self) -> bool:
        return self.data.synthetic

    def result(self, prior: str) -> PriorResult:
        return next(r for r in self.results if r.prior == prior)

    @property
    def headline(self) -> PriorResult:
        """The neutral prior's result (or the first one)."""
        return next((r for r in self.results if r.prior == "neutral"), self.results[0])

    @property
    def all_ok(self) -> bool:
        """Every fit's diagnostics, robustness re-fits included."""
        return self.diagnostics_ok and self.robustness.diagnostics_ok

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.report is not None:
            out["report"]["secondary"] = [list(s) for s in self.report.secondary]
        return jsonable(out)

    def write(self, path: Path) -> Path:
        doc = self.to_dict()
        validate(doc, source=str(path))
        Path(path).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "<dict>") -> "DidResult":
        validate(doc, source=source)
        d = dict(doc)
        d["outcome"] = OutcomeInfo(**d["outcome"])
        d["data"] = DataInfo(**d["data"])
        d["design"] = DesignInfo(**d["design"])
        rep = d.get("report")
        d["report"] = None if rep is None else ReportedResult(**{**rep, "secondary": tuple(tuple(s) for s in rep["secondary"])})
        d["results"] = [PriorResult(**r) for r in d["results"]]
        d["frequentist"] = [Frequentist(**f) for f in d["frequentist"]]
        rob = dict(d["robustness"])
        rob["refits"] = [Refit(**r) for r in rob.get("refits", [])]
        d["robustness"] = Robustness(**rob)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> "DidResult":
        return cls.from_dict(json.loads(Path(path).read_text()), source=str(path))


class ResultSchemaError(ValueError):
    """A result file that does not match the schema, with the path of the offending field."""


def is_did_result(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA_NAME


def validate(doc: dict, *, source: str = "<dict>") -> None:
    """Check ``doc`` against the JSON schema; raise :class:`ResultSchemaError` naming the field."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(top level)"
        raise ResultSchemaError(f"{source}: field {where}: {e.message}")

"""Administrative data on the command line: ``--ssda903 DIR --cin PATH --la-roles PATH --sdc-threshold N``.

Wiring into an analysis parser and loader (``analyses/did_runner.py``)::

    add_admin_args(parser)                                          # in build_parser
    cells, truth = admin_cells(args, spec.column) or load_cells(spec, args.data)   # in run
    # (pass the same keyword arguments as the runner gives cells_from_frame: kind=, covariates=, ...)

:func:`load_admin_frame` is the lower-level step (child-level frame, label, hash, what was
dropped), for analyses that aggregate differently. :func:`sdc_guard` gives the disclosure
check every table written from administrative data must pass (a no-op for synthetic data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analyses.common import log
from data.admin import cin, sdc, ssda903
from data.admin.roles import load_roles
from data.errors import DataError

#: outcome -> (source, derivation) for every outcome the administrative loaders can derive
ADMIN_OUTCOMES = {
    "kinship": ("ssda903", "kinship"),
    "rereferral": ("cin", "rereferral"),
    "escalation": ("cin", "escalation"),
    "assessment_days": ("cin", "assessment_days"),
    "same_day_assessment": ("cin", "same_day_assessment"),
}
#: other names an analysis may give the same outcome column
ALIASES = {
    "kinship_care": "kinship", "re_referral": "rereferral", "rereferral_6m": "rereferral",
    "re_referral_6m": "rereferral", "rereferral_escalation": "escalation", "escalation_6m": "escalation",
    "rereferral_cpp_lac": "escalation", "duration": "assessment_days", "assessment_duration": "assessment_days",
    "duration_days": "assessment_days", "assessment_working_days": "assessment_days", "same_day": "same_day_assessment",
}  # fmt: skip

#: disclosure rules for the tables ``analyses.did_runner`` writes (model summaries carry no counts)
RUNNER_TABLE_RULES = {
    "ppc": sdc.TableRule(counts=("n",), shares={"observed": "n"}),
    "ppc_share": sdc.TableRule(counts=("n",), shares={"observed": "n"}),
    "ppc_duration": sdc.TableRule(counts=("n",), shares={"observed_same_day_pct": "n"},
                                  means={"observed_mean_days": "n"}),
    "summary": sdc.TableRule(), "la_effects": sdc.TableRule(), "event_study": sdc.TableRule(),
    "diagnostics": sdc.TableRule(),
    "dropped": sdc.TableRule(counts=("count",)),
    "att_gt": sdc.TableRule(counts=("weight",)),       # weight: the children in each cohort-period
}


def _threshold(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the threshold must be at least 1")
    return value


def add_admin_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the administrative-data options to an analysis's parser."""
    g = parser.add_argument_group(
        "administrative data (instead of --data)",
        "Real SSDA903 / CIN census extracts; outputs are disclosure-controlled (README, 'Real administrative data').")
    g.add_argument("--ssda903", type=Path, default=None, metavar="DIR",
                   help="folder of SSDA903 header and episodes files (one folder per collection year, or one "
                        "file per table across years; several LAs)")
    g.add_argument("--cin", type=Path, default=None, metavar="PATH",
                   help="CIN census flat file, or a folder of them (one per census year)")
    g.add_argument("--la-roles", type=Path, default=None, metavar="PATH",
                   help="LA role table: la_code, role (pilot/comparator), adoption_date, settling_years[, label]")
    g.add_argument("--sdc-threshold", type=_threshold, default=sdc.DEFAULT_THRESHOLD, metavar="N",
                   help=f"suppress counts below N in every output table (default {sdc.DEFAULT_THRESHOLD})")
    return parser


def uses_admin_data(args: argparse.Namespace) -> bool:
    return getattr(args, "ssda903", None) is not None or getattr(args, "cin", None) is not None


def resolve_outcome(outcome: str) -> tuple[str, str]:
    """(source, derivation) for an outcome column name; ValueError listing the valid names."""
    key = ALIASES.get(outcome, outcome)
    if key not in ADMIN_OUTCOMES:
        raise ValueError(f"outcome {outcome!r} cannot be derived from administrative data; "
                         f"valid outcomes: {sorted(ADMIN_OUTCOMES)} (or aliases {sorted(ALIASES)})")
    return ADMIN_OUTCOMES[key]


def load_admin_frame(args: argparse.Namespace, outcome: str) -> tuple[pd.DataFrame, str, str, pd.DataFrame] | None:
    """Child-level frame for ``outcome`` from the administrative files named in ``args``.

    Returns ``None`` when neither ``--ssda903`` nor ``--cin`` was given, else (frame in the
    :func:`data.did_input.cells_from_frame` layout with the outcome in column ``outcome``,
    source label, data hash, dropped-records summary). The summary is disclosure-controlled
    (counts below ``--sdc-threshold`` suppressed) and safe to write; the unsuppressed lines go to
    standard error for the analyst. Bad files raise :class:`DataError` (exit code 2).
    """
    if not uses_admin_data(args):
        return None
    source, derivation = resolve_outcome(outcome)
    if getattr(args, "data", None) is not None:
        raise DataError("use either --data or administrative files (--ssda903/--cin), not both")
    if args.la_roles is None:
        raise DataError("administrative data need an LA role table: add --la-roles PATH "
                        "(columns la_code, role, adoption_date, settling_years)")
    roles = load_roles(args.la_roles)
    if source == "ssda903":
        if args.ssda903 is None:
            raise DataError(f"the {outcome} outcome is derived from SSDA903 data: add --ssda903 DIR")
        frame, label, digest, dropped = ssda903.load_kinship(args.ssda903, roles, outcome=derivation)
    else:
        if args.cin is None:
            raise DataError(f"the {outcome} outcome is derived from the CIN census: add --cin PATH")
        frame, label, digest, dropped = cin.load_cin_outcome(args.cin, roles, derivation, ssda903_root=args.ssda903)
    if derivation != outcome:
        frame = frame.rename(columns={derivation: outcome})
    for line in dropped.lines():
        log(f"[admin data] {line}")
    log(f"[admin data] {len(frame)} records for '{outcome}' from {label}")
    safe, _ = sdc.protect_table(dropped.frame(), RUNNER_TABLE_RULES["dropped"], name="dropped",
                                threshold=args.sdc_threshold)
    return frame, label, digest, safe


def admin_cells(args: argparse.Namespace, outcome: str, **cells_kwargs):
    """``(DidCells, None)`` built from administrative files, or ``None`` when none were given.

    The second element matches :func:`analyses.did_runner.load_cells` (no known truth for real
    data). ``cells_kwargs`` go to :func:`data.did_input.cells_from_frame` (e.g. ``kind``,
    ``covariates``, ``variants``); a duration outcome gets ``kind="duration"`` unless told otherwise.
    """
    import inspect

    from data.did_input import cells_from_frame

    got = load_admin_frame(args, outcome)
    if got is None:
        return None
    frame, label, digest, _ = got
    if (resolve_outcome(outcome)[1] == "assessment_days" and "kind" not in cells_kwargs
            and "kind" in inspect.signature(cells_from_frame).parameters):
        cells_kwargs["kind"] = "duration"
    return cells_from_frame(frame, outcome, source=label, data_hash=digest, synthetic=False, **cells_kwargs), None


def sdc_guard(args: argparse.Namespace) -> sdc.SdcGuard:
    """The disclosure check for this run: active (``--sdc-threshold``) for administrative data,
    a pass-through for the embedded synthetic data and ``--data`` files."""
    return sdc.SdcGuard(args.sdc_threshold if uses_admin_data(args) else None)

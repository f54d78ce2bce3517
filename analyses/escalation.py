"""Escalation: did SofS change re-referrals within 6 months that led to a child protection plan or care?

Population: referrals closed with no further action (NFA) or 'case closed'; outcome 1 when the
child is re-referred within 6 months and that re-referral leads to a child protection plan or
to the child becoming looked after. The report could use only 2 pilot and 2 comparator LAs;
here every LA enters with partial pooling, and a re-fit on the report's 4 LAs shows what that
pooling adds (``report's LAs only`` in ``robustness.csv``)::

    uv run python -m analyses.escalation
    uv run python -m analyses.escalation --robustness --out results/escalation_full
"""

from __future__ import annotations

from functools import partial

from analyses.sofs_did import OutcomeSpec, main as run_outcome
from models.did.result import ReportedResult
from data.synthetic import ReferralStudyConfig, referral_twin
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Re-referrals that escalate',
    question='Did SofS change re-referrals within 6 months that led to a child protection plan or care?',
    table8='Rate of re-referrals that progress to CPP/LAC',
    order=40,
)

SPEC = OutcomeSpec(
    name="escalation",
    column="escalation",
    label="re-referral leading to a child protection plan or care",
    population="referrals closed with no further action (NFA) or case closed",
    rises_if_programme_works=False,
    reported=ReportedResult(
        effect=None, units="pp", p_value=None, before_after="a reduction; direction unstable across specifications",
        grade="not moderate or high strength evidence (assumptions not met; only 2 pilot and 2 comparator LAs)",
        source="RR1054, 'Likelihood of a re-referral within 6 months that leads to a CPP or LAC plan' and Table 8"),
    default_data=partial(referral_twin, "escalation"),
    rope=1.0,
    mid=2.0,
    pretrend_threshold=1.0,
    covariates=("age_band", "sex"),
    robustness_by_default=True,
    nfa_population=True,
    report_sample=ReferralStudyConfig().escalation_report_sample,
    first_record_variant=True,
    target_accept=0.95,
    tune=1000,                 # not yet measured at the runner default of 500
)


def main(argv: list[str] | None = None) -> int:
    return run_outcome(SPEC, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())

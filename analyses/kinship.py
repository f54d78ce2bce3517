"""Kinship care: did SofS change the share of looked-after children placed with kin?

Population: children in the first 12 months of a period of care; outcome 1 when the child is
placed with a relative or friend (or leaves care on a special guardianship order), 0 for other
placements. Hierarchical Bayesian DiD (``models.did``) on the embedded synthetic
study twin, or on your own file with ``--data``::

    uv run python -m analyses.kinship                       # all three named priors
    uv run python -m analyses.kinship --data my_cells.csv --prior sceptical --strict
"""

from __future__ import annotations

from analyses.sofs_did import OutcomeSpec, main as run_outcome
from models.did.result import ReportedResult
from data.synthetic import kinship_twin
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Kinship care',
    question='Did SofS change the share of looked-after children placed with kin?',
    table8='Rate of kinship care',
    order=20,
)

SPEC = OutcomeSpec(
    name="kinship",
    column="kinship",
    label="kinship care",
    population="looked-after children in the first 12 months of a period of care",
    rises_if_programme_works=True,
    reported=ReportedResult(
        effect=-12.63, units="pp", p_value=0.03, before_after="62% -> 49%",
        grade="moderate strength evidence of decreased kinship care",
        source="RR1054, 'Likelihood of kinship care compared with non-kinship care' and Table 8"),
    default_data=kinship_twin,
)


def main(argv: list[str] | None = None) -> int:
    return run_outcome(SPEC, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())

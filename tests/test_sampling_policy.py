"""The re-fit policy after divergent transitions (:func:`models.sampling.sample_checked`), shared by
the engagement command; the DiD engine ranks its re-fits with the same :meth:`Diagnostics.rank`."""

from __future__ import annotations

import pandas as pd

from models.diagnostics import Diagnostics
from models.sampling import REFIT_TARGET_ACCEPT, sample_checked


def _diag(divergences: int = 0, ess: float = 1000.0, rhat: float = 1.0) -> Diagnostics:
    table = pd.DataFrame({"rhat": [rhat], "ess_bulk": [ess], "ess_tail": [ess]}, index=pd.Index(["x"], name="variable"))
    problems = [f"R-hat {rhat:.3f} > 1.01 for 'x'"] if rhat > 1.01 else []
    problems += [f"{divergences} divergent transitions out of 4000 draws"] if divergences else []
    return Diagnostics(table, divergences, 4000, [1.0], problems)


def _run(outcomes: dict[float, Diagnostics], target_accept: float = 0.9):
    calls = []

    def sample(ta, seed):
        calls.append((ta, seed))
        return ta                       # the "fit" is its target acceptance, checked below

    fit, diag, note = sample_checked(sample, lambda ta: outcomes[ta], target_accept=target_accept, seed=7)
    return fit, diag, note, calls


def test_divergences_alone_are_re_fitted_with_smaller_steps_and_the_better_fit_kept():
    fit, diag, note, calls = _run({0.9: _diag(divergences=1), REFIT_TARGET_ACCEPT: _diag()})
    assert calls == [(0.9, 7), (REFIT_TARGET_ACCEPT, 7 + 1000)]
    assert fit == REFIT_TARGET_ACCEPT and diag.ok
    assert note.startswith("1 divergent transitions at target acceptance 0.9; re-fitted at 0.99 (kept")


def test_a_re_fit_that_is_worse_is_not_kept():
    fit, diag, note, _ = _run({0.9: _diag(divergences=1), REFIT_TARGET_ACCEPT: _diag(divergences=5)})
    assert fit == 0.9 and diag.divergences == 1 and "not better" in note


def test_no_re_fit_when_the_fit_passes_or_fails_on_more_than_divergences():
    for first in (_diag(), _diag(divergences=2, rhat=1.05)):
        fit, diag, note, calls = _run({0.9: first})
        assert calls == [(0.9, 7)] and fit == 0.9 and diag is first and note == ""
    _, _, note, calls = _run({REFIT_TARGET_ACCEPT: _diag(divergences=1)}, target_accept=REFIT_TARGET_ACCEPT)
    assert len(calls) == 1 and note == ""       # already at the smallest steps


def test_rank_puts_passing_then_divergence_free_then_larger_ess_last():
    ranked = sorted([_diag(ess=2000, rhat=1.05), _diag(divergences=1, ess=3000), _diag(ess=500), _diag(ess=900),
                     _diag(divergences=3, ess=100, rhat=1.05)], key=Diagnostics.rank)
    assert [(d.ok, d.divergences, float(d.table.ess_bulk.iloc[0])) for d in ranked] == [
        (False, 3, 100.0), (False, 1, 3000.0), (False, 0, 2000.0), (True, 0, 500.0), (True, 0, 900.0)]

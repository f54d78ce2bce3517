"""Differential item functioning between arms as a check (issue 19, item 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.instruments import parse_instrument, validate_responses
from models import psychometric_irt as irt
from models.diagnostics import check_sampling

TRUE_DIF = 0.8          # item Q0 is easier for SofS families by 0.8 latent SD beyond their trait


def _simulate(n: int = 300, n_items: int = 8, K: int = 4, seed: int = 6, no_arm: bool = False):
    rng = np.random.default_rng(seed)
    sofs = (np.arange(n) % 2).astype(float)
    theta = 0.3 * (sofs - sofs.mean()) + rng.normal(size=n)
    a = rng.uniform(1.2, 2.4, n_items)
    b = np.sort(rng.normal(0, 1, (n_items, K - 1)), axis=1)
    shift = np.zeros(n_items)
    shift[0] = TRUE_DIF
    eff = theta[:, None] + shift[None, :] * (sofs - sofs.mean())[:, None]
    p = irt.category_probabilities(eff, a[None], b[None])
    y = (rng.uniform(size=p.shape[:-1])[..., None] > p.cumsum(-1)).sum(-1)
    inst = parse_instrument({"name": "sim", "categories": list(range(K)), "score_direction": "higher_is_better",
                             "dimensions": {"t": "T"}, "items": [{"id": f"Q{j}", "dimension": "t"} for j in range(n_items)]})
    frame = pd.DataFrame({f"Q{j}": y[:, j] for j in range(n_items)}).assign(
        arm=np.where(sofs > 0, "sofs", "contrast"))
    if no_arm:
        frame = frame.drop(columns="arm")
    return irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="overall"), shift


@pytest.fixture(scope="module")
def dif_fit():
    data, shift = _simulate()
    idata = irt.sample_grm(irt.build_grm(data, dif=True), data, draws=500, tune=500, chains=2, seed=11)
    return data, shift, idata


def test_dif_terms_find_the_item_that_works_differently(dif_fit):
    """The planted item is flagged with its relative shift recovered (the shifts sum to zero, so
    the truth is 0.8 - 0.8/8 = 0.7 for Q0 and -0.1 for the others); at most one other item flagged.

    Measured (2 x 500 draws, default priors): Q0's posterior mean 0.53 at data seed 6, 0.65 at
    seed 7, 0.63 at seed 5 with 600 families; at seed 5 with 300 the data themselves say
    0.36 [0.02, 0.71] (a flat DIF prior gives the same), so that seed fails the 0.3 tolerance."""
    data, shift, idata = dif_fit
    diag = check_sampling(idata, ["dif", "dif_sd", "discrimination", "sofs_effect"])
    assert diag.divergences == 0 and diag.table["rhat"].max() < 1.02, diag.problems
    table = irt.dif_table(idata, data)
    relative = shift - shift.mean()
    q0 = table.set_index("item").loc["Q0"]
    assert q0["flagged"] and abs(q0["dif_mean"] - relative[0]) < 0.3, q0.to_dict()
    assert q0["dif_eti95_low"] <= relative[0] <= q0["dif_eti95_high"]
    assert table["flagged"].iloc[1:].sum() <= 1, table
    np.testing.assert_allclose(table["dif_mean"].sum(), 0.0, atol=1e-8)      # zero-sum within the dimension


def test_dif_needs_an_arm_column():
    data, _ = _simulate(n=40, no_arm=True)
    with pytest.raises(ValueError, match="needs an arm column"):
        irt.build_grm(data, dif=True)

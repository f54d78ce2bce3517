"""Shared pieces: statements, priors, diagnostics thresholds, atomic output, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from analyses.common import OutputDir, provenance
from data.errors import DataError
from models.priors import Z95, select_priors, spiegelhalter_priors
from models.statements import state, summarise_effect, verbal_probability


def test_verbal_ladder_is_calibrated():
    assert verbal_probability(0.995) == "virtually certain"
    assert verbal_probability(0.93) == "very likely"
    assert verbal_probability(0.5) == "about as likely as not"
    assert verbal_probability(0.07) == "very unlikely"
    assert state(0.93, "x").startswith("very likely (P = 0.93) that x")
    with pytest.raises(ValueError):
        verbal_probability(1.2)


def test_effect_summary_matches_normal_closed_form():
    rng = np.random.default_rng(1)
    draws = rng.normal(-3.0, 2.0, 400_000)
    s = summarise_effect(draws, rope=2.0, mid=5.0)
    dist = stats.norm(-3.0, 2.0)
    assert s.p_negative == pytest.approx(dist.cdf(0), abs=0.003)
    assert s.p_below_rope == pytest.approx(dist.cdf(-2), abs=0.003)
    assert s.p_in_rope == pytest.approx(dist.cdf(2) - dist.cdf(-2), abs=0.003)
    assert s.p_beyond_mid == pytest.approx(dist.cdf(-5) + dist.sf(5), abs=0.003)
    assert s.eti95_low == pytest.approx(dist.ppf(0.025), abs=0.03)
    assert s.p_below_rope + s.p_in_rope + s.p_above_rope == pytest.approx(1.0)


def test_named_priors_put_five_percent_where_documented():
    priors = spiegelhalter_priors(0.5, neutral_sd=1.0, scale="log-odds ratio", target_label="t")
    sc, en = priors["sceptical"], priors["enthusiastic"]
    assert stats.norm(sc.mean, sc.sd).sf(0.5) == pytest.approx(0.05, abs=1e-9)
    assert stats.norm(en.mean, en.sd).cdf(0.0) == pytest.approx(0.05, abs=1e-9)
    assert sc.sd == pytest.approx(0.5 / Z95)
    chosen = select_priors(priors, "all", ["neutral:0.1:0.7"])
    assert [p.name for p in chosen] == ["sceptical", "neutral", "enthusiastic"]
    assert (chosen[1].mean, chosen[1].sd) == (0.1, 0.7)
    with pytest.raises(ValueError, match="NAME:MEAN:SD"):
        select_priors(priors, "all", ["bogus:1:2"])


def test_output_dir_is_atomic(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with OutputDir(target) as out:
            out.write_text("a.txt", "half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with OutputDir(target) as out:
        out.write_json("x.json", {"p": np.float64(0.5), "arr": np.arange(2)})
        out.commit()
    assert json.loads((target / "x.json").read_text()) == {"p": 0.5, "arr": [0, 1]}
    with OutputDir(target) as out:  # a second run replaces the first
        out.write_text("y.txt", "second")
        out.commit()
    assert sorted(p.name for p in target.iterdir()) == ["y.txt"]


def test_provenance_records_versions_seed_and_hash():
    p = provenance(seed=3, data_hash="sha256:abc", data_label="d", argv=["--x"])
    assert p["seed"] == 3 and p["data_hash"] == "sha256:abc"
    assert p["packages"]["pymc"] and p["packages"]["arviz"] and p["packages"]["nutpie"]


def test_data_error_names_file_row_column():
    err = DataError("negative value -1", row=3, column="n").located("cells.csv")
    assert str(err) == "file cells.csv, row 3, column 'n': negative value -1"


def test_missing_shared_data_skip_locally_and_fail_in_ci(monkeypatch, tmp_path):
    """Issue 22, item 5: ``needs_shared`` skips without ``CI`` and fails with it."""
    from tests.conftest import needs_shared

    absent = tmp_path / "not-there"
    monkeypatch.delenv("CI", raising=False)
    assert needs_shared(absent).name == "skip"
    monkeypatch.setenv("CI", "1")
    mark = needs_shared(absent, reason="the data")
    assert mark.name == "needs_shared" and "not-there" in mark.kwargs["fail"]
    assert needs_shared(tmp_path).kwargs == {}                # present: runs as usual


def test_log_binomial_coefficient_is_exact_for_counts():
    import math

    from models.numerics import log_binomial_coefficient

    n = np.array([0, 1, 5, 40, 300, 1000])
    k = np.array([0, 1, 2, 17, 150, 3])
    exact = np.array([math.log(math.comb(int(a), int(b))) for a, b in zip(n, k)])
    np.testing.assert_allclose(log_binomial_coefficient(n, k), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lo,hi", [(-0.3, 0.8), (2.0, 3.0), (-3.0, -2.5), (8.0, 9.0), (-40.0, -39.0), (30.0, 31.0),
                                   (-np.inf, 0.5), (0.5, np.inf)])
def test_truncated_std_normal_has_scipys_distribution_in_the_middle_and_far_tails(lo, hi):
    from models.numerics import truncated_std_normal

    x = truncated_std_normal(np.full(20_000, lo), np.full(20_000, hi), np.random.default_rng(3))
    assert lo <= x.min() and x.max() <= hi
    assert stats.kstest(x, stats.truncnorm(lo, hi).cdf).pvalue > 0.001
    ref = stats.truncnorm(lo, hi)
    assert x.mean() == pytest.approx(ref.mean(), abs=5 * ref.std() / np.sqrt(x.size))

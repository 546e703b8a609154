"""Paired statistics (snnrobust.analysis.paired) against hand computations on small made-up numbers."""

import math

import pytest

from snnrobust.analysis.paired import (binomial_two_sided, mcnemar, replicates_needed, samples_needed,
                                       seed_differences, t_cdf, t_quantile)


def test_t_quantiles_match_the_printed_table():
    # Student's t table (two-sided 95 %: q 0.975; 80 % power: q 0.80)
    table = {(0.975, 1): 12.7062, (0.975, 2): 4.3027, (0.975, 4): 2.7764, (0.975, 10): 2.2281,
             (0.975, 30): 2.0423, (0.80, 2): 1.0607, (0.80, 5): 0.9195}
    for (q, df), want in table.items():
        assert t_quantile(q, df) == pytest.approx(want, abs=1e-4)
    assert t_quantile(0.025, 3) == pytest.approx(-3.1824, abs=1e-4)
    assert t_cdf(0.0, 7) == 0.5 and t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/pi


def test_seed_differences_by_hand():
    # d = (0.20, 0.05, 0.05): mean 0.10, sd = sqrt((0.01 + 0.0025 + 0.0025) / 2) = sqrt(0.0075),
    # half-width = t(0.975, 2) * sd / sqrt(3) = 4.302653 * 0.05 = 0.2151326
    d = seed_differences([0.90, 0.80, 0.85], [0.70, 0.75, 0.80])
    assert d.diffs == pytest.approx((0.20, 0.05, 0.05)) and d.mean == pytest.approx(0.10)
    assert d.sd == pytest.approx(math.sqrt(0.0075))
    assert (d.lo, d.hi) == pytest.approx((0.10 - 0.2151326, 0.10 + 0.2151326), abs=1e-6)
    one = seed_differences([0.9], [0.7])
    assert one.mean == pytest.approx(0.2) and not one.has_interval and one.sd is None
    with pytest.raises(ValueError):
        seed_differences([0.9, 0.8], [0.7])


def test_mcnemar_by_hand():
    # pairs (a, b): 2 both right, 5 only a, 1 only b, 2 neither; N = 10
    a = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    b = [1, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    m = mcnemar(a, b)
    assert (m.both, m.a_only, m.b_only, m.neither, m.n) == (2, 5, 1, 2, 10)
    # exact two-sided: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64
    assert m.p == pytest.approx(14 / 64)
    assert m.diff == pytest.approx(0.4)
    # Agresti-Min: cells + 1/2 -> b10 5.5, b01 1.5, N 12; d = 4/12, SE = sqrt(7 - 16/12) / 12
    d, se = 4 / 12, math.sqrt(7 - 16 / 12) / 12
    assert (m.lo, m.hi) == pytest.approx((d - 1.959964 * se, d + 1.959964 * se), abs=1e-6)
    assert binomial_two_sided(0, 0) == 1.0 and binomial_two_sided(3, 6) == 1.0
    assert binomial_two_sided(0, 10) == pytest.approx(2 / 1024)


def test_sample_sizes_by_hand():
    # replicates: smallest R with (t(.975, R-1) + t(.80, R-1)) * sd / sqrt(R) <= |d|; sd = d:
    # R = 9: (2.3060 + 0.8889) / 3 = 1.065 > 1; R = 10: (2.2622 + 0.8834) / 3.1623 = 0.995 <= 1
    assert replicates_needed(0.05, 0.05) == 10
    assert replicates_needed(-0.05, 0.05) == 10  # the sign does not matter
    assert replicates_needed(0.0, 0.05) is None and replicates_needed(0.05, None) is None
    assert replicates_needed(1e-6, 1.0, max_n=50) == 51
    # McNemar (Connor 1987): p_disc 0.2, d 0.05:
    # (1.959964 * sqrt(0.2) + 0.841621 * sqrt(0.1975))^2 / 0.0025 = 625.5 -> 626
    assert samples_needed(0.2, 0.05) == 626
    assert samples_needed(0.2, 0.0) is None and samples_needed(0.1, 0.2) is None

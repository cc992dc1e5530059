from __future__ import annotations

import numpy as np
import pytest

from flywheel_core.train.sampler import PositiveAwareSampler


def _share(flags, draws, **kw):
    sampler = PositiveAwareSampler(flags, num_samples=draws, **kw)
    index = np.array([i for i, _ in sampler])
    return np.asarray(flags)[index].mean(), index, sampler


@pytest.mark.parametrize(("n_pos", "n_neg"), [(3, 97), (50, 50), (90, 10)])
@pytest.mark.parametrize("fraction", [0.5, 0.7, 0.9])
def test_positive_share_is_the_set_fraction_whatever_the_balance(n_pos, n_neg, fraction):
    flags = [True] * n_pos + [False] * n_neg
    share, index, sampler = _share(flags, 20000, positive_fraction=fraction, seed=1)
    assert sampler.share == fraction
    assert abs(share - fraction) < 0.015, (n_pos, n_neg, share)
    # within each group draws are uniform: every chip is drawn, none far above its share
    counts = np.bincount(index, minlength=len(flags))
    assert (counts > 0).all()
    pos_counts = counts[:n_pos]
    assert pos_counts.max() < 1.3 * pos_counts.mean() + 10


def test_no_positives_or_no_negatives_fall_back_to_uniform():
    share, index, sampler = _share([False] * 10, 5000, positive_fraction=0.7)
    assert share == 0.0 and sampler.share == 0.0
    assert set(index.tolist()) == set(range(10))
    share, _, sampler = _share([True] * 4, 100, positive_fraction=0.7)
    assert share == 1.0 and sampler.share == 1.0


def test_none_is_uniform_over_all_chips():
    flags = [True] * 10 + [False] * 90
    share, _, sampler = _share(flags, 20000, positive_fraction=None, seed=2)
    assert sampler.share == pytest.approx(0.1) and abs(share - 0.1) < 0.01


def test_draws_are_seeded_and_carry_distinct_seeds():
    flags = [True, False] * 20
    a = list(PositiveAwareSampler(flags, 64, seed=5))
    b = list(PositiveAwareSampler(flags, 64, seed=5))
    c = list(PositiveAwareSampler(flags, 64, seed=6))
    assert a == b and a != c and len(a) == 64
    assert len({s for _, s in a}) == 64
    # a second pass goes on with the stream (a new block of draws, not a replay)
    sampler = PositiveAwareSampler(flags, 64, seed=5)
    assert list(sampler) == a and list(sampler) != a


def test_bad_arguments():
    with pytest.raises(ValueError):
        PositiveAwareSampler([], 10)
    with pytest.raises(ValueError):
        PositiveAwareSampler([True], 0)
    with pytest.raises(ValueError):
        PositiveAwareSampler([True], 10, positive_fraction=1.5)

"""ROC-AUC against hand-computed cases."""

import numpy as np
import pytest

from pipeline.metrics.roc import roc_auc


def test_perfect_inverted_and_hand_computed_auc():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    # Pairs (pos, neg): (2,1) win, (2,3) lose, (4,1) win, (4,3) win -> 3/4.
    assert roc_auc([2, 4], [1, 3]) == 0.75


def test_ties_count_half():
    assert roc_auc([1, 1], [1, 1]) == 0.5
    # (2,2) tie 0.5, (2,1) win, (3,2) win, (3,1) win -> 3.5/4.
    assert roc_auc([2, 3], [2, 1]) == 0.875


def test_random_scores_give_about_one_half_and_empty_sets_fail():
    rng = np.random.default_rng(0)
    assert abs(roc_auc(rng.normal(size=4000), rng.normal(size=4000)) - 0.5) < 0.02
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([], [1.0])

"""ROC-AUC of a binary scorer, as the Mann-Whitney probability.

``AUC = P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)`` over all (positive, negative) pairs, which is
the area under the ROC curve. Computed from ranks (ties get their average rank), so it takes
``O(n log n)`` and needs no threshold sweep.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores ``positive`` (label 1) against ``negative`` (label 0).

    Raises ValueError when either set is empty (the AUC is undefined).
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    if not len(positive) or not len(negative):
        raise ValueError(f"AUC needs both classes, got {len(positive)} positives and "
                         f"{len(negative)} negatives")  # fmt: skip
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))

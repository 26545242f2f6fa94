"""The balanced score, the one definition shared by the report's balanced best (`harness.analysis.verdicts`), its
charts' ranking (`harness.analysis.selection`) and `moebench tune --objective balanced` (`harness.tune.settings`):
the geometric mean of prompt processing and generation speed, each divided by the best of its kind (a ratio
below 0 counts as 0), so 1.0 is a configuration that is best at both."""

from __future__ import annotations

import numpy as np


def balanced_score(pp, tg, best_pp, best_tg):
    """√(max(pp / best_pp, 0) · max(tg / best_tg, 0)), element-wise for arrays and Series (NaN stays NaN); a
    float for numbers."""
    score = np.sqrt(np.maximum(pp / best_pp, 0) * np.maximum(tg / best_tg, 0))
    return float(score) if np.ndim(score) == 0 else score

"""MSTTR: mean segmental type-token ratio of the predictions (raft.evaluation.metrics.diversity.msttr)."""

import evaluate

from raft.evaluation.evaluate_modules._text_metric import info
from raft.evaluation.metrics.diversity import msttr


class Msttr(evaluate.Metric):
    def _info(self):
        return info(
            evaluate,
            "Mean type-token ratio over non-overlapping windows of `window` tokens of all predictions' tokens.",
            "predictions: list of str; window: int (100); drop_punctuation: bool (False). "
            "Returns {'msttr_<window>': float} (NaN when there are fewer tokens than one window).",
        )

    def _compute(self, predictions, window=100, drop_punctuation=False):
        return {f"msttr_{window}": msttr(predictions, window=window, drop_punctuation=drop_punctuation)}

"""Mean length of the predictions in word tokens (raft.evaluation.metrics.diversity.mean_length)."""

import evaluate

from raft.evaluation.evaluate_modules._text_metric import info
from raft.evaluation.metrics.diversity import mean_length


class Length(evaluate.Metric):
    def _info(self):
        return info(
            evaluate,
            "Mean number of word tokens per prediction.",
            "predictions: list of str; drop_punctuation: bool (False). Returns {'length': float}.",
        )

    def _compute(self, predictions, drop_punctuation=False):
        return {"length": mean_length(predictions, drop_punctuation=drop_punctuation)}

"""distinct-n: distinct n-grams over all n-grams of the predictions (raft.evaluation.metrics.diversity.distinct_n)."""

import evaluate

from raft.evaluation.evaluate_modules._text_metric import info
from raft.evaluation.metrics.diversity import distinct_n


class DistinctN(evaluate.Metric):
    def _info(self):
        return info(
            evaluate,
            "Distinct n-grams / all n-grams, n-grams taken inside each prediction and pooled over all of them.",
            "predictions: list of str; n: list of int ([1, 2]); drop_punctuation: bool (False). "
            "Returns {'distinct_<n>': float} for each n.",
        )

    def _compute(self, predictions, n=(1, 2), drop_punctuation=False):
        return {f"distinct_{k}": distinct_n(predictions, k, drop_punctuation=drop_punctuation) for k in n}

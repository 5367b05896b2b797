"""unique-n: the number of n-grams that occur exactly once in the predictions (raft.evaluation.metrics.diversity)."""

import evaluate

from raft.evaluation.evaluate_modules._text_metric import info
from raft.evaluation.metrics.diversity import unique_n


class UniqueN(evaluate.Metric):
    def _info(self):
        return info(
            evaluate,
            "Number of n-grams occurring exactly once over all predictions (a count: compare at equal sizes).",
            "predictions: list of str; n: list of int ([1, 2]); drop_punctuation: bool (False). "
            "Returns {'unique_<n>': int} for each n.",
        )

    def _compute(self, predictions, n=(1, 2), drop_punctuation=False):
        return {f"unique_{k}": unique_n(predictions, k, drop_punctuation=drop_punctuation) for k in n}

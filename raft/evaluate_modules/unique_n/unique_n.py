"""unique-n: the number of n-grams that occur exactly once in the predictions (raft.metrics.diversity.unique_n)."""

import evaluate

from raft.evaluate_modules._text_metric import info
from raft.metrics.diversity import unique_n


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

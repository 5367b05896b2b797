"""Exact-match accuracy of final answers (raft.answers, as reward=exact_match reads them)."""

import datasets
import evaluate

from raft.answers import check_format, extract_answer, same_answer
from raft.evaluate_modules._text_metric import CITATION


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of predictions whose final answer, read in `answer_format` (answer_line: "
            "'Answer: <x>', boxed: \\boxed{x}, hashes: '#### x', last_number), equals the reference answer "
            "(numbers compared as numbers). A prediction without an answer in that format counts as wrong.",
            citation=CITATION,
            inputs_description="predictions: list of str; references: list of str (the answers); "
            "answer_format: str ('answer_line'). Returns {'exact_match': float}.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, answer_format="answer_line"):
        answer_format = check_format(answer_format, "answer_format")
        right = [
            (answer := extract_answer(prediction, answer_format)) is not None and same_answer(answer, reference)
            for prediction, reference in zip(predictions, references)
        ]
        return {"exact_match": sum(right) / len(right) if right else float("nan")}

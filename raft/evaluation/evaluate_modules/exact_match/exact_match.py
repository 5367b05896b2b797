"""Exact-match accuracy of final answers (raft.data.answers, as reward=exact_match reads and grades them)."""

import datasets
import evaluate

from raft.data.answers import check_extraction, check_format, lm_eval_match, read_answer, same_answer
from raft.evaluation.evaluate_modules._text_metric import CITATION


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of predictions whose final answer, read in `answer_format` (answer_line: "
            "'Answer: <x>', boxed: \\boxed{x}, hashes: '#### x', last_number), equals the reference answer "
            "as math-verify judges it (\\frac12 = 0.5, x = 5 = 5; two integers exactly). A prediction without an "
            "answer in that format counts as wrong. extraction='strict' / 'flexible' instead reads and compares "
            "as lm-eval's GSM8K task (strict-match: the first '#### <number>'; flexible-extract: the last number).",
            citation=CITATION,
            inputs_description="predictions: list of str; references: list of str (the answers); "
            "answer_format: str ('answer_line'); extraction: str ('format', 'strict' or 'flexible'). "
            "Returns {'exact_match': float}.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, answer_format="answer_line", extraction="format"):
        answer_format = check_format(answer_format, "answer_format")
        extraction = check_extraction(extraction, "extraction")
        same = same_answer if extraction == "format" else lm_eval_match
        right = [
            (answer := read_answer(prediction, answer_format, extraction)) is not None and same(answer, reference)
            for prediction, reference in zip(predictions, references)
        ]
        return {"exact_match": sum(right) / len(right) if right else float("nan")}

"""What raft's `evaluate` modules share: their inputs (one text per prediction) and their description."""

from __future__ import annotations

CITATION = """@article{dong2023raft,
  title={RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment},
  author={Dong, Hanze and Xiong, Wei and Goyal, Deepanshu and others},
  journal={Transactions on Machine Learning Research},
  year={2023}
}"""

TOKENS = (
    "Texts are tokenised as GEM-metrics does (NLTK's word tokenizer on regex-split sentences, lower-cased); "
    "drop_punctuation=True leaves punctuation tokens out."
)


def info(evaluate, description: str, inputs: str):
    import datasets

    return evaluate.MetricInfo(
        description=f"{description} {TOKENS}",
        citation=CITATION,
        inputs_description=inputs,
        features=datasets.Features({"predictions": datasets.Value("string")}),
    )

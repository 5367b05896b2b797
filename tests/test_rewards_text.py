"""Text rewards: VADER and a Hugging Face sequence classifier on a tiny random-weight BERT."""

from __future__ import annotations

import math

import pytest
import torch

from raft.rewards.hf_classifier import HFSequenceClassifier
from raft.rewards.vader import VaderSentiment

WORDS = "i love this great day hate that awful film the a is was and very good bad".split()


def test_vader_ranks_positive_above_negative():
    reward = VaderSentiment()
    good, bad = reward(["How was it?"] * 2, ["I love it, what a wonderful, happy day!", "It was awful and I hate it."])
    assert good > 0.5 and bad < -0.5


def test_vader_rejects_unknown_field():
    with pytest.raises(ValueError, match="reward.field"):
        VaderSentiment(field="joy")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-label BERT with random weights and a 20-word vocabulary, saved like a hub model."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


PROMPTS = ["how was the film", "how was the day", "is this good"]
RESPONSES = ["i love this great film", "that was an awful day and i hate it", "very very bad"]


def test_hf_classifier_scores_each_pair_and_honours_label_index(tiny_bert):
    logit1 = HFSequenceClassifier(str(tiny_bert), label_index=1, batch_size=2)(PROMPTS, RESPONSES)
    logit0 = HFSequenceClassifier(str(tiny_bert), label_index=0, batch_size=2)(PROMPTS, RESPONSES)
    prob1 = HFSequenceClassifier(str(tiny_bert), label_index=1, use_logits=False)(PROMPTS, RESPONSES)
    assert len(logit1) == len(logit0) == len(prob1) == 3
    assert all(math.isfinite(x) for x in logit1 + logit0 + prob1)
    assert logit0 != logit1
    # Probability of label 1 is the softmax of the two logits.
    for l0, l1, p in zip(logit0, logit1, prob1):
        assert p == pytest.approx(1 / (1 + math.exp(l0 - l1)), abs=1e-5)


def test_hf_classifier_template_includes_prompt(tiny_bert):
    alone = HFSequenceClassifier(str(tiny_bert), text_template="{response}")(PROMPTS, RESPONSES)
    with_prompt = HFSequenceClassifier(str(tiny_bert), text_template="{prompt} {response}")(PROMPTS, RESPONSES)
    assert alone != with_prompt


def test_hf_classifier_label_index_out_of_range(tiny_bert):
    reward = HFSequenceClassifier(str(tiny_bert), label_index=2)
    with pytest.raises(ValueError, match="label_index=2 but .* has 2 labels"):
        reward(PROMPTS, RESPONSES)


def test_hf_classifier_bad_template():
    with pytest.raises(ValueError, match="reward.text_template"):
        HFSequenceClassifier("some/model", text_template="{prompt}")

import math
import warnings
from pathlib import Path

import pytest
import torch

from raft.modules.sft import IGNORE, pad_batch, response_logits, response_loss, training_rows
from raft.policies.causal_lm import CausalLMPolicy
from raft.policies.models import load_causal_lm
from raft.sampling.samples import Sample


def test_response_loss_counts_only_unmasked_tokens():
    # Two-token vocabulary. Position 0 predicts token 1 with logits (0, 0): loss ln 2.
    # Position 1 predicts token 0 with logits (ln 3, 0): p = 3/4, loss ln(4/3). Position 2 predicts a
    # masked label and must not count. Mean = (ln 2 + ln 4/3) / 2.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE, 1, 0, IGNORE]])
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert response_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def text_rows(tokenizer, prompts, responses, max_length, truncated=False):
    """Training rows of dataset-style text pairs, tokenised by the raw-text policy as the model would produce them."""
    policy = CausalLMPolicy("tiny-llama", chat_template=False)
    samples = [
        Sample(prompt_idx=i, prompt=p, response=r, finish_reason="length" if truncated else None)
        for i, (p, r) in enumerate(zip(prompts, responses))
    ]
    return training_rows(policy.token_rows(tokenizer, samples), max_length)


def test_prompt_tokens_are_masked_and_eos_closes_the_response():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["How are you?"], [" Great"], max_length=64)
    prompt_len = len(tokenizer("How are you?", add_special_tokens=False)["input_ids"])
    labels = rows[0]["labels"]
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == rows[0]["input_ids"][prompt_len:]
    assert labels[-1] == tokenizer.eos_token_id


def test_a_response_cut_at_the_length_cap_gets_no_eos():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["How are you?"], [" Great"], max_length=64, truncated=True)
    assert tokenizer.eos_token_id not in rows[0]["labels"]


def test_truncation_keeps_the_response_end_and_padding_is_masked():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["a long prompt " * 20, "hi"], [" yes", " no"], max_length=8)
    assert len(rows[0]["input_ids"]) == 8 and rows[0]["labels"][-1] == tokenizer.eos_token_id
    batch = pad_batch(rows, tokenizer.pad_token_id)
    pad = 8 - len(rows[1]["input_ids"])  # left padding: the response ends at the right edge
    assert pad > 0 and batch["attention_mask"][1, :pad].sum() == 0 and batch["attention_mask"][1, pad:].all()
    assert (batch["labels"][1, :pad] == IGNORE).all() and batch["labels"][1, -1] == tokenizer.eos_token_id


def full_logits_loss(model, rows, pad_id):
    """The loss as it was computed before the response window: right padding, logits at every position."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
    logits = model(input_ids=ids, attention_mask=mask).logits
    return response_loss(logits, labels), logits, ids


@pytest.mark.parametrize("lora", [False, True])
def test_the_response_window_gives_the_full_logits_loss_and_log_probs(tiny_lm_folder, lora):
    from raft.modules.sft import response_logits, token_log_probs

    policy = CausalLMPolicy(str(tiny_lm_folder), chat_template=False, lora={"r": 4} if lora else None, device="cpu")
    model, tokenizer = policy.load(None, trainable=True)
    model.eval()  # no LoRA dropout: both passes see the same weights
    prompts = ["a much longer prompt than the other ones " * 3, "hi", "a middle one here"]
    rows = text_rows(tokenizer, prompts, [" yes indeed", " no", " maybe so, maybe not"], max_length=64)
    batch = pad_batch(rows, tokenizer.pad_token_id)
    logits, labels = response_logits(model, batch)
    width = batch["input_ids"].shape[1]
    longest_response = max(sum(label != IGNORE for label in r["labels"]) for r in rows)
    assert logits.shape[1] == longest_response + 1 < width  # only the response window's logits
    expected, full, ids = full_logits_loss(model, rows, tokenizer.pad_token_id)
    assert response_loss(logits, labels).item() == pytest.approx(expected.item(), abs=1e-5)
    logp, mask = token_log_probs(logits, labels)
    full_lp = torch.log_softmax(full.float(), -1)
    for i, r in enumerate(rows):  # row i's response tokens, in the window and in the full pass
        n, m = len(r["input_ids"]), int(mask[i].sum())
        want = [full_lp[i, n - m - 1 + j, r["input_ids"][n - m + j]].item() for j in range(m)]
        assert logp[i][mask[i]].tolist() == pytest.approx(want, abs=1e-5)
    # the gradients agree too: the window changes what is computed, not what is learned
    model.zero_grad()
    response_loss(logits, labels).backward()
    window_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    full_logits_loss(model, rows, tokenizer.pad_token_id)[0].backward()
    for got, want in zip(window_grads, [p.grad for p in model.parameters() if p.requires_grad]):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)


def test_a_finished_stage_leaves_no_model_alive(tiny_lm_folder, tmp_path):
    """The Trainer partial of conf/trainer/default.yaml binds one progress-bar callback, which Lightning ties to the
    Trainer using it: shared across stages, it kept the last stage's Trainer, model and optimizer states alive."""
    import gc

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from transformers import LlamaForCausalLM

    import raft.cli.resolvers  # noqa: F401  (raft's resolvers and config schemas, as the command line registers them)
    from raft.modules.sft import SFTModule
    from raft.trackers.tracking import Tracker

    with initialize_config_dir(config_dir=str(Path(__file__).parent.parent / "raft" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.precision=32"])
    make = instantiate(cfg.trainer, _convert_="all")  # as raft/cli/main.py builds it
    policy = CausalLMPolicy(str(tiny_lm_folder), chat_template=False, sample_dtype="float32", device="cpu")
    tokenizer = policy.load(None)[1]
    ids = tokenizer("a b c", add_special_tokens=False)["input_ids"]
    samples = [Sample(prompt_idx=0, prompt="a", response="b c", prompt_ids=ids[:1], response_ids=ids[1:])] * 4
    tracker = Tracker(run_dir=tmp_path / "run", backends={})
    for t, trainer in enumerate((make, tracker.trainer(make, 0))):  # plain, and as the run's tracker wraps it
        policy.finetune(None, samples, tmp_path / f"stage{t}", SFTModule, trainer)
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, LlamaForCausalLM)]
    tracker.close()


def test_gradient_checkpointing_trains_the_same_gradients(tiny_lm_folder):
    """model.gradient_checkpointing recomputes activations in the backward pass: less memory, the same numbers."""
    grads = []
    for checkpointing in (False, True):
        policy = CausalLMPolicy(
            str(tiny_lm_folder), chat_template=False, device="cpu", gradient_checkpointing=checkpointing
        )
        with warnings.catch_warnings():  # transformers 5.2x renamed it: the old name warns it will go in v6
            warnings.simplefilter("error", FutureWarning)
            model, _ = policy.load(None, "float32", trainable=True)
        assert model.is_gradient_checkpointing == checkpointing
        batch = pad_batch(training_rows([([1, 2, 3, 4], [5, 6, 7]), ([8, 9], [10, 11])], 64), pad_id=0)
        torch.manual_seed(0)
        response_loss(*response_logits(model, batch)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))

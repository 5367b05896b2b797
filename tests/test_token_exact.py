"""What is trained and scored is exactly what the model sampled, after exactly the prompt it was given.

Two tokenizer families: byte-level BPE (the tiny Llama's, as SmolLM2 / GPT-2 / Llama-3) and a
SentencePiece-style one that adds a BOS to raw text (as LLaMA's). Both fold the space that starts a
response into its first token, which tokenising prompt and response apart gets wrong.
"""

from __future__ import annotations

import functools
import json
import string

import pytest
import torch
from conftest import quiet_trainer

from raft.modules.sft import IGNORE, SFTModule
from raft.policies.causal_lm import CausalLMPolicy
from raft.policies.models import build_tiny_causal_lm, load_causal_lm
from raft.sampling.generation import end_response, sample_k
from raft.sampling.sampler import Sampler
from raft.sampling.samples import Sample
from raft.sampling.tokens import stop_token_ids

PROMPTS = [(0, "\n\nHuman: How can I cook rice?\n\nAssistant:"), (1, "\n\nHuman: hi\n\nAssistant:")]


def build_sentencepiece_llama(folder):
    """A random-weight Llama with a Unigram / Metaspace tokenizer that puts <s> before raw text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from raft.policies.models.tiny import CORPUS

    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.UnigramTrainer(
        vocab_size=200,
        special_tokens=["<unk>", "<s>", "</s>"],
        unk_token="<unk>",
        initial_alphabet=list(string.printable[:95]),
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def model_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return str(build_tiny_causal_lm(folder, seed=1) if request.param == "bpe" else build_sentencepiece_llama(folder))


class RecordingSFT(SFTModule):
    """The real SFT module; it also keeps the rows it was given, so a test can read what was trained."""

    seen: list[dict] = []

    def __init__(self, model, rows, pad_id, **kwargs):
        RecordingSFT.seen = rows
        super().__init__(model, rows, pad_id, **kwargs)


def test_trained_and_scored_ids_are_the_sampled_ids(model_folder, tmp_path):
    policy = CausalLMPolicy(model_folder, chat_template=False, sample_dtype="float32", device="cpu")
    torch.manual_seed(0)
    samples = policy.sample(None, PROMPTS, Sampler(K=3, max_new_tokens=8, temperature=1.5), tmp_path)
    _, tokenizer = policy.load(None)
    for s in samples:
        assert s.prompt_ids == policy.encode_prompt(tokenizer, s.prompt)
        assert s.response == tokenizer.decode(
            s.response_ids[: len(s.response_ids) - (s.finish_reason == "stop")], skip_special_tokens=True
        )
    policy.finetune(
        None, samples, tmp_path / "ckpt", functools.partial(RecordingSFT, lr=1e-3), quiet_trainer(max_steps=1)
    )
    for s, row in zip(samples, RecordingSFT.seen):  # byte for byte what the model produced, after its prompt
        assert row["input_ids"] == s.prompt_ids + s.response_ids
        assert row["labels"] == [IGNORE] * len(s.prompt_ids) + s.response_ids
    # log-probabilities score the same ids: compare with one unbatched forward pass per sample
    model, _ = policy.load(None)
    for s, got in zip(samples, policy.log_probs(None, samples)):
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        n = len(s.prompt_ids)
        assert got == pytest.approx(sum(float(lp[n + i - 1, t]) for i, t in enumerate(s.response_ids)), abs=1e-4)


def test_a_reference_is_tokenised_as_the_model_would_produce_it(model_folder):
    """'...Assistant:' + ' That': the space belongs to the response's first token, as when sampling."""
    policy = CausalLMPolicy(model_folder, chat_template=False)
    _, tokenizer = load_causal_lm(model_folder)
    prompt, response = PROMPTS[0][1], " That is a good question."
    prompt_ids, response_ids = policy.encode_pair(tokenizer, prompt, response)
    assert prompt_ids + response_ids == tokenizer(prompt + response)["input_ids"]
    if tokenizer.bos_token_id not in prompt_ids:  # byte-level BPE: the old, separate tokenisation differs
        assert response_ids != tokenizer(response.lstrip(), add_special_tokens=False)["input_ids"]


def test_raw_prompts_get_the_tokenizers_bos_and_chat_prompts_do_not_get_two(model_folder):
    _, tokenizer = load_causal_lm(model_folder)
    raw = CausalLMPolicy(model_folder, chat_template=False).encode_prompt(tokenizer, "Hi there")
    if tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id:  # LLaMA-style: <s> before raw text
        assert raw[0] == tokenizer.bos_token_id and raw.count(tokenizer.bos_token_id) == 1
    else:  # byte-level BPE adds nothing
        assert raw == tokenizer("Hi there", add_special_tokens=False)["input_ids"]


def test_eos_only_where_the_model_stopped():
    decode = lambda ids: "".join(chr(97 + i) for i in ids)  # noqa: E731  (ids 0..25 -> letters)
    finished = end_response([3, 4, 9, 9], stop_ids=[9], stop=(), decode=decode)
    assert (finished.ids, finished.text, finished.finish_reason, finished.stop_reason) == ([3, 4, 9], "de", "stop", 9)
    capped = end_response([3, 4, 5], stop_ids=[9], stop=(), decode=decode)
    assert (capped.ids, capped.finish_reason) == ([3, 4, 5], "length")
    # and training appends no EOS to a capped sample, nor to a text-only one cut at the cap
    policy = CausalLMPolicy("tiny-llama", chat_template=False)
    _, tokenizer = load_causal_lm("tiny-llama")
    eos = tokenizer.eos_token_id
    rows = policy.token_rows(
        tokenizer,
        [
            Sample(0, "hi", " yes", prompt_ids=[5], response_ids=[7, 8], finish_reason="length"),
            Sample(1, "hi", " yes", prompt_ids=[5], response_ids=[7, eos], finish_reason="stop"),
            Sample(2, "hi", " yes", finish_reason="length"),
            Sample(3, "hi", " yes"),
        ],
    )
    assert rows[0] == ([5], [7, 8]) and rows[1] == ([5], [7, eos])
    assert rows[2][1][-1] != eos and rows[3][1][-1] == eos


def test_a_stop_string_cuts_the_response_and_is_recorded():
    decode = lambda ids: "".join(["He", "llo", "\n\n", "Hu", "man", ":", " more"][i] for i in ids)  # noqa: E731
    cut = end_response([0, 1, 2, 3, 4, 5, 6], stop_ids=[99], stop=("\n\nHuman:",), decode=decode)
    assert cut.text == "Hello" and cut.ids == [0, 1, 2, 3, 4, 5]  # the string's tokens end the sampled ids
    assert (cut.finish_reason, cut.stop_reason) == ("stop", "\n\nHuman:")
    # a token that straddles the string's start stays with the stop, never half in the text
    decode2 = lambda ids: "".join(["Yes.\n\n", "Human", ":"][i] for i in ids)  # noqa: E731
    straddle = end_response([0, 1, 2], stop_ids=[99], stop=("\n\nHuman:",), decode=decode2)
    assert straddle.text == "" and straddle.ids == [0, 1, 2]


def test_sampling_stops_on_any_id_of_the_generation_config_and_on_stop_strings(tmp_path):
    model, tokenizer = load_causal_lm(str(build_tiny_causal_lm(tmp_path / "m", seed=2)))
    prompt = [tokenizer("Please write a short note to thank", add_special_tokens=False)["input_ids"]]
    greedy = Sampler(K=1, top_k=1, max_new_tokens=8)
    [[free]] = sample_k(model, tokenizer, prompt, greedy, stop_token_ids(model, tokenizer))
    assert free.finish_reason == "length" and len(free.ids) == 8
    # a chat model's end-of-turn id, listed beside EOS in its generation config, stops it
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, free.ids[2]]
    stops = stop_token_ids(model, tokenizer)
    assert stops == [tokenizer.eos_token_id, free.ids[2]]
    [[stopped]] = sample_k(model, tokenizer, prompt, greedy, stops)
    first = free.ids.index(free.ids[2])
    assert stopped.ids == free.ids[: first + 1] and stopped.finish_reason == "stop"
    assert stopped.stop_reason == free.ids[2]
    # a stop string taken from the free text cuts there
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    text = tokenizer.decode(free.ids)
    string_ = text[len(tokenizer.decode(free.ids[:4])) :][:3]
    [[cut]] = sample_k(
        model,
        tokenizer,
        prompt,
        Sampler(K=1, top_k=1, max_new_tokens=8, stop=[string_]),
        stop_token_ids(model, tokenizer),
    )
    assert cut.finish_reason == "stop" and cut.stop_reason == string_ and string_ not in cut.text
    assert text.startswith(cut.text) and free.ids[: len(cut.ids)] == cut.ids


def test_ppo_from_a_lora_sft_checkpoint_keeps_the_sft_weights(tmp_path):
    """Before any PPO update, the saved PPO policy is the SFT policy (not the raw base plus an adapter)."""
    from peft import LoraConfig, get_peft_model

    from raft.modules.ppo import PPOModule

    policy = CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu")
    base, tokenizer = load_causal_lm("tiny-llama")
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, p in sft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained-looking adapter: SFT differs from the base
    sft.save_pretrained(tmp_path / "sft")
    tokenizer.save_pretrained(tmp_path / "sft")

    model, _ = policy.load(tmp_path / "sft")
    ppo = PPOModule(model=model, lora_rank=4)  # its fresh adapter is a zero update
    ppo.save_policy(tmp_path / "ppo", tokenizer, base=tmp_path / "sft")
    ids = torch.tensor([tokenizer("How can I cook rice?")["input_ids"]])
    with torch.no_grad():
        want = policy.load(tmp_path / "sft")[0](input_ids=ids).logits
        got = policy.load(tmp_path / "ppo")[0](input_ids=ids).logits
        raw = policy.load(None)[0](input_ids=ids).logits
    assert (want - raw).abs().max() > 1e-3  # the SFT adapter matters
    assert torch.allclose(got, want, atol=1e-5)
    saved = json.loads((tmp_path / "ppo" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(tmp_path / "sft")


def test_a_teachers_samples_are_reported_under_its_name_and_trained_as_text(tmp_path):
    """Distillation: the K samples and their rewards are the teacher's; the student never sees its ids."""
    from raft.rewards.base import Reward
    from raft.selection.selectors import LocalRanking
    from raft.tasks.raft import RaftTask

    class Length(Reward):
        def score_batch(self, prompts, responses):
            return [float(len(r)) for r in responses]

    student = CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu")
    seen = []
    real_finetune = student.finetune
    student.finetune = lambda ckpt, samples, *a: seen.extend(samples) or real_finetune(ckpt, samples, *a)
    teacher = CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu", chat_template=False)
    loop = RaftTask(
        policy=student,
        reward=Length(),
        sampler=Sampler(K=2, max_new_tokens=6),
        selector=LocalRanking(),
        module=functools.partial(SFTModule, lr=1e-3),
        trainer=quiet_trainer(max_steps=1),
        output_dir=tmp_path,
        iterations=1,
        batch_size=2,
        teacher=teacher,
    )
    [metrics] = loop.run_iterations([p for _, p in PROMPTS])
    assert {"teacher_reward", "teacher_best_of_k_reward", "kl"} <= metrics.keys()
    assert "policy_reward" not in metrics and "best_of_k_reward" not in metrics
    assert seen and all(s.response_ids is None and s.prompt_ids is None for s in seen)


def test_a_replayed_teachers_capped_response_is_trained_without_an_eos(tmp_path):
    """Table 7's recorded teacher: a response the teacher was cut off in (max_new_tokens) must not teach the
    student to stop there. Its stop reasons travel from the teacher's samples.jsonl to the student's rows."""
    from raft.policies.recorded import RecordedSamples
    from raft.rewards.base import Reward
    from raft.sampling.samples import read_samples, write_samples
    from raft.selection.selectors import LocalRanking
    from raft.tasks.raft import RaftTask

    class Constant(Reward):
        def score_batch(self, prompts, responses):
            return [1.0] * len(responses)

    prompts = ["Tell me about rice", "Tell me about tea"]
    teacher_ids = {"prompt_ids": [901, 902], "response_ids": [903, 904, 905]}  # the teacher tokenizer's, not ours
    write_samples(
        tmp_path / "teacher" / "iter_000" / "samples.jsonl",
        [
            Sample(0, prompts[0], " Rice is a grain that", **teacher_ids, finish_reason="length"),
            Sample(1, prompts[1], " Tea is a drink.", **teacher_ids, finish_reason="stop", stop_reason=2),
        ],
    )
    student = CausalLMPolicy("tiny-llama", chat_template=False, sample_dtype="float32", device="cpu")
    loop = RaftTask(
        policy=student,
        reward=Constant(),
        sampler=Sampler(K=1, max_new_tokens=6),
        selector=LocalRanking(),
        module=functools.partial(RecordingSFT, lr=1e-3),
        trainer=quiet_trainer(max_steps=1),
        output_dir=tmp_path / "student",
        iterations=1,
        batch_size=2,
        track_kl=False,
        teacher=RecordedSamples(str(tmp_path / "teacher")),
    )
    [metrics] = loop.run_iterations(prompts)
    replayed = {s.prompt_idx: s for s in read_samples(tmp_path / "student" / "iter_000" / "samples.jsonl")}
    assert (replayed[0].finish_reason, replayed[1].finish_reason, replayed[1].stop_reason) == ("length", "stop", 2)
    assert replayed[0].response_ids is None  # the student scores and trains the text its own way
    assert metrics["capped_share"] == 0.5  # the teacher's capped share, reported as such
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = {row["prompt_idx"]: row for row in RecordingSFT.seen}
    for idx, finished in ((0, False), (1, True)):
        prompt_ids, response_ids = student.encode_pair(tokenizer, prompts[idx], replayed[idx].response)
        want = response_ids + [tokenizer.eos_token_id] * finished
        assert rows[idx]["input_ids"] == prompt_ids + want
        assert rows[idx]["labels"] == [IGNORE] * len(prompt_ids) + want

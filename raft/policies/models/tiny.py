"""A tiny random-weight Llama with its own byte-level tokenizer, built offline in seconds (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path

import torch

from raft.infra.atomic import atomic_dir, is_complete
from raft.infra.locks import file_lock
from raft.infra.model_cache import cache_root

TINY_ALIAS = "tiny-llama"

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "How can I cook rice without a rice cooker? Use a pot with a lid and simmer gently.",
    "Human: What is a good way to learn a language? Assistant: Practice a little every day.",
    "I love this, it is wonderful, great and happy. I hate that, it is terrible, sad and bad.",
    "Please write a short note to thank a friend for their help with moving house.",
]


def build_tiny_causal_lm(folder: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a random-weight LlamaForCausalLM and a matching tokenizer into `folder`; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_folder() -> Path:
    """The `tiny-llama` alias: built once into raft's cache folder."""
    folder = cache_root() / TINY_ALIAS
    if not is_complete(folder):
        with file_lock(folder.with_name(folder.name + ".lock")):  # parallel jobs build it once
            if not is_complete(folder):
                with atomic_dir(folder) as tmp, torch.random.fork_rng(devices=[]):  # its seed is its own
                    build_tiny_causal_lm(tmp)
    return folder

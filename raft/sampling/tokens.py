"""Token ids exactly as a causal LM sees and produces them: prompts, stop ids, dataset references.

Byte-level BPE (SmolLM2, GPT-2, Llama-3, Qwen) and SentencePiece tokenizers both fold the space
that starts a response into its first token ("Assistant:" + " That" -> "ĠThat"), so a response
tokenised on its own is not what the model would have produced after the prompt. References are
therefore tokenised together with their prompt and split at the prompt's boundary.
"""

from __future__ import annotations

from typing import Sequence


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the generation config's list (end-of-turn ids of chat models) and EOS."""
    ids: list[int] = []
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def encode_text(tokenizer, text: str, special_tokens: bool) -> list[int]:
    """Token ids of `text`; with `special_tokens`, the BOS the tokenizer adds (LLaMA's <s>), never an EOS."""
    ids = list(tokenizer(text, add_special_tokens=special_tokens)["input_ids"])
    eos = tokenizer.eos_token_id
    if special_tokens and ids and eos is not None and ids[-1] == eos and not text.endswith(tokenizer.eos_token):
        ids.pop()  # a few tokenizers close every text with EOS; a prompt is not closed
    return ids


def encode_reference(
    tokenizer, prompt_text: str, prompt_ids: Sequence[int], response: str, special_tokens: bool
) -> list[int]:
    """The ids the model would have produced for `response` after `prompt_ids` (no EOS).

    Prompt and response are tokenised together and split where the prompt's own ids end. Where a
    token straddles the boundary (a prompt ending in a space), the response is tokenised on its own.
    """
    joint = encode_text(tokenizer, prompt_text + response, special_tokens)
    n = len(prompt_ids)
    if joint[:n] == list(prompt_ids):
        return joint[n:]
    return encode_text(tokenizer, response, False)


def first_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> int | None:
    """Index of the first stop id in `ids`, or None."""
    stops = set(stop_ids)
    return next((i for i, t in enumerate(ids) if t in stops), None)

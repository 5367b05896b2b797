"""Causal language models behind the RAFT loop: sampling, fine-tuning, log-probabilities, perplexity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from raft.devices import pick_device
from raft.distributed import is_rank_zero
from raft.models import check_model_name, load_causal_lm
from raft.modules.fitting import fit_to_completion
from raft.modules.sft import tokenize_pairs
from raft.policies.base import Policy
from raft.policies.generation import sample_k
from raft.samples import Sample


class CausalLMPolicy(Policy):
    """Any Hugging Face causal LM (hub id, folder or offline alias), fully fine-tuned or with LoRA.

    Checkpoints are full model folders, or LoRA adapter folders applied to `name_or_path`.
    Sampling runs in `sample_dtype` (bf16 is 2-5x faster on CPUs with AMX and on GPUs); training keeps
    fp32 master weights (bf16 would round away the small updates) under the trainer's mixed precision.
    """

    def __init__(self, name_or_path: str, chat_template: bool = True, system_prompt: str | None = None,
                 sample_dtype: str = "bfloat16", lora: dict | None = None, max_length: int = 512,
                 device: str = "auto"):
        check_model_name(name_or_path)
        if max_length < 8:
            raise ValueError(f"model.max_length must be >= 8, got {max_length}")
        self.name_or_path, self.chat_template, self.system_prompt = name_or_path, chat_template, system_prompt
        self.sample_dtype, self.lora, self.max_length = sample_dtype, dict(lora) if lora else None, max_length
        self.device = pick_device(device)

    # -- loading -------------------------------------------------------------------------------
    def load(self, checkpoint: Path | None, dtype: str = "float32", trainable: bool = False):
        """(model, tokenizer) for `checkpoint` (None: the initial model) on the policy's device."""
        is_adapter = checkpoint is not None and (Path(checkpoint) / "adapter_config.json").exists()
        if is_adapter:  # an adapter applies to the model it was trained on (e.g. an SFT checkpoint)
            saved = json.loads((Path(checkpoint) / "adapter_config.json").read_text())
            source = saved.get("base_model_name_or_path") or self.name_or_path
        else:
            source = str(checkpoint) if checkpoint is not None else self.name_or_path
        model, tokenizer = load_causal_lm(source, dtype)
        if is_adapter or (trainable and self.lora):
            model = self._with_adapter(model, checkpoint if is_adapter else None, trainable)
        return model.to(self.device).train(trainable), tokenizer

    def _with_adapter(self, model, adapter: Path | None, trainable: bool):
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
            return model if trainable else model.merge_and_unload()  # merged weights sample faster
        lora = dict(self.lora)
        config = LoraConfig(r=lora.pop("r", 16), lora_alpha=lora.pop("alpha", 32),
                            lora_dropout=lora.pop("dropout", 0.05), task_type="CAUSAL_LM",
                            target_modules=lora.pop("target_modules", "all-linear"), **lora)
        return get_peft_model(model, config)

    def format_prompt(self, tokenizer, prompt: str) -> str:
        if not self.chat_template:  # raw text (e.g. HH dialogues for a base model): the system prompt leads
            return f"{self.system_prompt}\n\n{prompt}" if self.system_prompt else prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # -- the Policy interface ------------------------------------------------------------------
    def sample(self, checkpoint, prompts: Sequence[tuple[int, str]], sampler, out_dir: Path) -> list[Sample]:
        model, tokenizer = self.load(checkpoint, self.sample_dtype)
        texts = [self.format_prompt(tokenizer, p) for _, p in prompts]
        responses = sample_k(model, tokenizer, texts, sampler)
        return [Sample(prompt_idx=idx, prompt=prompt, response=r, sample_idx=j)
                for (idx, prompt), rs in zip(prompts, responses) for j, r in enumerate(rs)]

    def finetune(self, checkpoint, samples: Sequence[Sample], out_dir: Path,
                 module: Callable[..., Any], trainer: Callable[..., Any]) -> None:
        model, tokenizer = self.load(checkpoint, "float32", trainable=True)
        prompts = [self.format_prompt(tokenizer, s.prompt) for s in samples]
        rows = tokenize_pairs(tokenizer, prompts, [s.response for s in samples], self.max_length)
        lit = module(model=model, rows=rows, pad_id=tokenizer.pad_token_id)
        fit_to_completion(trainer(default_root_dir=str(out_dir)), lit)
        if is_rank_zero():  # under DDP every rank holds the same weights; one writes them
            model.save_pretrained(out_dir)  # a LoRA model saves only its adapter
            tokenizer.save_pretrained(out_dir)

    def log_probs(self, checkpoint, samples: Sequence[Sample]) -> list[float]:
        from raft.metrics.perplexity import sequence_log_probs

        model, tokenizer = self.load(checkpoint, "float32")
        prompts = [self.format_prompt(tokenizer, s.prompt) for s in samples]
        values = sequence_log_probs(model, tokenizer, prompts, [s.response for s in samples])
        return values

    def perplexity(self, checkpoint, prompts: Sequence[str], references: Sequence[str]) -> float:
        from raft.metrics.perplexity import reference_perplexity

        model, tokenizer = self.load(checkpoint, "float32")
        value = reference_perplexity(model, tokenizer, [self.format_prompt(tokenizer, p) for p in prompts],
                                     list(references), max_length=self.max_length)
        return value


"""Causal language models behind the RAFT loop: sampling, fine-tuning, log-probabilities, perplexity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from raft.infra.devices import pick_device
from raft.modules.sft import training_rows
from raft.policies.base import Policy
from raft.policies.models import check_model_name, load_causal_lm, resolve_model_path
from raft.policies.models.loading import load_tokenizer
from raft.sampling.engines.vllm_engine import VLLMEngine
from raft.sampling.generation import end_response, sample_k
from raft.sampling.samples import Sample
from raft.sampling.tokens import encode_reference, encode_text, stop_token_ids
from raft.trainer.stage import TrainingJob


class CausalLMPolicy(Policy):
    """Any Hugging Face causal LM (hub id, folder or offline alias), fully fine-tuned or with LoRA.

    Checkpoints are full model folders, or LoRA adapter folders applied to `name_or_path`.
    Sampling runs in `sample_dtype` (bf16 is 2-5x faster on CPUs with AMX and on GPUs, and many times slower
    where it is emulated: the configs pick it per machine, raft/infra/devices.py `native_bf16`); training keeps
    fp32 master weights (bf16 would round away the small updates) under the trainer's mixed precision.
    """

    TRAINING_ONLY = ("gradient_checkpointing",)  # not part of the evaluation cache's key (evaluation_cache.py)

    def __init__(
        self,
        name_or_path: str,
        chat_template: bool = True,
        system_prompt: str | None = None,
        sample_dtype: str = "bfloat16",
        lora: dict | None = None,
        max_length: int = 512,
        device: str = "auto",
        vllm: VLLMEngine | None = None,
        gradient_checkpointing: bool = False,
    ):
        check_model_name(name_or_path)
        if max_length < 8:
            raise ValueError(f"model.max_length must be >= 8, got {max_length}")
        self.name_or_path, self.chat_template, self.system_prompt = name_or_path, chat_template, system_prompt
        self.sample_dtype, self.lora, self.max_length = sample_dtype, dict(lora) if lora else None, max_length
        self.device = pick_device(device)
        self.gradient_checkpointing = gradient_checkpointing
        self.vllm = vllm or VLLMEngine()  # started only when a sampler asks for engine=vllm

    # -- loading -------------------------------------------------------------------------------
    def weights_of(self, checkpoint: Path | None) -> tuple[str, Path | None]:
        """(the full model `checkpoint` builds on, its LoRA adapter or None)."""
        if checkpoint is not None and (Path(checkpoint) / "adapter_config.json").exists():
            # an adapter applies to the model it was trained on (e.g. an SFT checkpoint)
            saved = json.loads((Path(checkpoint) / "adapter_config.json").read_text())
            return saved.get("base_model_name_or_path") or self.name_or_path, Path(checkpoint)
        return (str(checkpoint) if checkpoint is not None else self.name_or_path), None

    def load(self, checkpoint: Path | None, dtype: str = "float32", trainable: bool = False):
        """(model, tokenizer) for `checkpoint` (None: the initial model) on the policy's device."""
        source, adapter = self.weights_of(checkpoint)
        is_adapter = adapter is not None
        if is_adapter and (Path(source) / "adapter_config.json").exists():
            model, tokenizer = self.load(Path(source), dtype)  # stacked: e.g. PPO's adapter on a LoRA SFT model
        else:
            model, tokenizer = load_causal_lm(source, dtype)
        if trainable and self.gradient_checkpointing:  # recompute each layer's activations in the backward pass
            enable_checkpointing(model)
            model.config.use_cache = False
        if is_adapter or (trainable and self.lora):
            model = self._with_adapter(model, checkpoint if is_adapter else None, trainable)
        return model.to(self.device).train(trainable), tokenizer

    def _with_adapter(self, model, adapter: Path | None, trainable: bool):
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
            return model if trainable else model.merge_and_unload()  # merged weights sample faster
        lora = dict(self.lora)
        config = LoraConfig(
            r=lora.pop("r", 16),
            lora_alpha=lora.pop("alpha", 32),
            lora_dropout=lora.pop("dropout", 0.05),
            task_type="CAUSAL_LM",
            target_modules=lora.pop("target_modules", "all-linear"),
            **lora,
        )
        return get_peft_model(model, config)

    def format_prompt(self, tokenizer, prompt: str) -> str:
        """The prompt as the model reads it: its chat template, or raw text led by the system prompt."""
        if not self.chat_template:  # raw text (e.g. HH dialogues for a base model): the system prompt leads
            return f"{self.system_prompt}\n\n{prompt}" if self.system_prompt else prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, tokenizer, prompt: str) -> list[int]:
        """The prompt's ids: a chat template writes its own special tokens, raw text gets the tokenizer's BOS."""
        return encode_text(tokenizer, self.format_prompt(tokenizer, prompt), special_tokens=not self.chat_template)

    def encode_pair(self, tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
        """(prompt ids, response ids) for text the model did not sample here (a dataset's, a teacher's)."""
        prompt_ids = self.encode_prompt(tokenizer, prompt)
        # a chat message's content starts the turn; raw text continues the prompt, leading space and all
        content = response.strip() if self.chat_template else response
        return prompt_ids, encode_reference(
            tokenizer, self.format_prompt(tokenizer, prompt), prompt_ids, content, special_tokens=not self.chat_template
        )

    def token_rows(self, tokenizer, samples: Sequence[Sample]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, response ids) to train or score: the sampled ids where the sample has them.

        Text-only samples (dataset responses, another model's) are tokenised as this model would have
        produced them, and end with EOS unless they were cut at the length cap.
        """
        rows = []
        for s in samples:
            if s.response_ids is not None and s.prompt_ids is not None:
                rows.append((list(s.prompt_ids), list(s.response_ids)))
                continue
            prompt_ids, response_ids = self.encode_pair(tokenizer, s.prompt, s.response)
            rows.append((prompt_ids, response_ids if s.truncated else response_ids + [tokenizer.eos_token_id]))
        return rows

    # -- the Policy interface ------------------------------------------------------------------
    def sample(self, checkpoint, prompts: Sequence[tuple[int, str]], sampler, out_dir: Path) -> list[Sample]:
        if getattr(sampler, "engine", "hf") == "vllm":
            return self.sample_with_vllm(checkpoint, prompts, sampler)
        model, tokenizer = self.load(checkpoint, self.sample_dtype)
        return self.generate(model, tokenizer, prompts, sampler)

    def generate(self, model, tokenizer, prompts: Sequence[tuple[int, str]], sampler) -> list[Sample]:
        """`sampler.K` samples per (prompt_idx, prompt) from a loaded model (PPO samples from the one it trains)."""
        prompt_ids = [self.encode_prompt(tokenizer, p) for _, p in prompts]
        generations = sample_k(model, tokenizer, prompt_ids, sampler, stop_token_ids(model, tokenizer))
        return self.as_samples(prompts, prompt_ids, generations)

    def sample_with_vllm(self, checkpoint, prompts: Sequence[tuple[int, str]], sampler) -> list[Sample]:
        """The same samples' form from the vLLM engine: it returns ids, raft cuts and decodes them as for `generate`."""
        source, adapter = self.weights_of(checkpoint)
        if adapter is not None and (Path(source) / "adapter_config.json").exists():
            raise ValueError(f"sampler.engine=vllm serves one adapter on a full model; {checkpoint} stacks two")
        tokenizer = load_tokenizer(source)
        stop_ids = stop_token_ids(_GenerationConfigOf(resolve_model_path(source)), tokenizer)
        prompt_ids = [self.encode_prompt(tokenizer, p) for _, p in prompts]
        # the engine's seed follows the stage's (seed_stage seeded torch): a resumed stage asks for the same draws
        seed = int(torch.randint(2**31 - 1, ()).item())
        lora_rank = int((self.lora or {}).get("r", 16)) if self.lora else 0
        self.vllm.ensure_started(resolve_model_path(self.name_or_path), self.sample_dtype, seed, lora_rank)
        self.vllm.use_weights(resolve_model_path(source))
        rows = self.vllm.generate(prompt_ids, sampler, stop_ids, seed, str(adapter) if adapter else None)
        generations = [
            [
                end_response(ids, stop_ids, sampler.stop, lambda x: tokenizer.decode(x, skip_special_tokens=True))
                for ids in row
            ]
            for row in rows
        ]
        return self.as_samples(prompts, prompt_ids, generations)

    @staticmethod
    def as_samples(prompts, prompt_ids, generations) -> list[Sample]:
        return [
            Sample(
                prompt_idx=idx,
                prompt=prompt,
                response=g.text,
                sample_idx=j,
                prompt_ids=ids,
                response_ids=g.ids,
                finish_reason=g.finish_reason,
                stop_reason=g.stop_reason,
            )
            for (idx, prompt), ids, gs in zip(prompts, prompt_ids, generations)
            for j, g in enumerate(gs)
        ]

    def training_job(self, checkpoint, samples: list[Sample], out_dir: Path) -> TrainingJob:
        self.vllm.pause()  # the fine-tuning gets the engine's memory
        model, tokenizer = self.load(checkpoint, "float32", trainable=True)
        rows = training_rows(self.token_rows(tokenizer, samples), self.max_length)
        for row, s in zip(rows, samples):  # which prompt and reward each row has (GRPO's group advantages)
            row["prompt_idx"], row["reward"] = s.prompt_idx, s.reward

        def save(folder: Path, state: dict | None) -> None:
            model.save_pretrained(folder, state_dict=state)  # a LoRA model saves only its adapter
            tokenizer.save_pretrained(folder)

        return TrainingJob({"model": model, "rows": rows, "pad_id": tokenizer.pad_token_id}, save)

    def save_unchanged(self, checkpoint, out_dir: Path) -> None:
        if checkpoint is not None:
            return super().save_unchanged(checkpoint, out_dir)
        model, tokenizer = self.load(None, "float32")  # the initial model, as a full folder `load` reads
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

    def log_probs(self, checkpoint, samples: Sequence[Sample]) -> list[float]:
        """log p(response ids | prompt ids), the stop tokens included: the probability of what was sampled."""
        from raft.policies.perplexity import sequence_log_probs

        model, tokenizer = self.load(checkpoint, "float32")
        return sequence_log_probs(
            model, self.token_rows(tokenizer, samples), tokenizer.pad_token_id, max_length=self.max_length
        )

    def perplexity(self, checkpoint, prompts: Sequence[str], references: Sequence[str]) -> float:
        """Perplexity on the reference responses' own tokens, tokenised as the model would produce them (no EOS)."""
        from raft.policies.perplexity import reference_perplexity

        if len(prompts) != len(references):
            raise ValueError(f"got {len(prompts)} prompts but {len(references)} references")
        model, tokenizer = self.load(checkpoint, "float32")
        rows = [self.encode_pair(tokenizer, p, r) for p, r in zip(prompts, references)]
        return reference_perplexity(model, rows, tokenizer.pad_token_id, max_length=self.max_length)


def enable_checkpointing(model) -> None:
    """Activation checkpointing under its transformers >= 5.2x name, or the older `gradient_checkpointing_enable`."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class _GenerationConfigOf:
    """What `stop_token_ids` reads of a model (its generation config), without loading the weights."""

    def __init__(self, folder: str):
        from transformers import GenerationConfig

        try:
            self.generation_config = GenerationConfig.from_pretrained(folder)
        except OSError:  # a folder without generation_config.json: EOS alone ends a response
            self.generation_config = None

"""Stable Diffusion behind the RAFT loop: sample with a diffusers pipeline, fine-tune LoRA adapters on the UNet.

LoRA goes through PEFT (`unet.add_adapter(LoraConfig(...))`), the current diffusers API. A checkpoint folder
holds only the adapter, in diffusers' format (`pytorch_lora_weights.safetensors`), so users can also load it
with `pipe.load_lora_weights(folder)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from raft.infra.devices import DTYPES, pick_device
from raft.policies.base import Policy
from raft.sampling.image import DiffusionSampler, image_name
from raft.sampling.images import open_image, save_png, stage_dir_of
from raft.sampling.samples import Sample
from raft.trainer.stage import TrainingJob

ALIASES = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5"}
LORA_FILE = "pytorch_lora_weights.safetensors"


class MissingWeightsError(FileNotFoundError):
    pass


def _missing(name: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"Stable Diffusion weights {name!r} are not available: {why}. Provide them with "
        "model.name_or_path=/path/to/stable-diffusion-v1-5 (a diffusers folder with model_index.json, e.g. from "
        "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir ...`) "
        "or a hub id with internet access."
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


class StableDiffusionPolicy(Policy):
    modality = "image"

    def __init__(
        self,
        name_or_path: str = "sd15",
        lora_rank: int = 4,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
        lora_targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0"),
        dtype: str = "auto",
        device: str = "auto",
        seed: int = 0,
    ):
        if lora_rank < 1:
            raise ValueError(f"model.lora_rank must be >= 1, got {lora_rank}")
        if not 0 <= lora_dropout < 1:
            raise ValueError(f"model.lora_dropout must be in [0, 1), got {lora_dropout}")
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(f"model.dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
        if not lora_targets:
            raise ValueError("model.lora_targets must name at least one UNet layer")
        self.name_or_path = ALIASES.get(name_or_path, name_or_path)
        self.lora_rank, self.lora_dropout = lora_rank, lora_dropout
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_targets = list(lora_targets)
        self.device = pick_device(device)
        if dtype == "auto":  # half precision on GPUs; CPUs lack fast float16 kernels
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype = DTYPES[dtype]
        self.seed = seed
        self._check_weights_reachable()

    # ---- weights -----------------------------------------------------------------------------------
    def _check_weights_reachable(self) -> None:
        """Fail at construction when we can already tell the weights cannot be had (before any stage runs)."""
        path = Path(self.name_or_path).expanduser()
        looks_local = path.exists() or self.name_or_path.startswith(("/", ".", "~")) or self.name_or_path.count("/") > 1
        if looks_local:
            if not (path / "model_index.json").is_file():
                raise _missing(self.name_or_path, f"{path} is not a diffusers folder (no model_index.json)")
            return
        if _offline() and not self._in_hub_cache():
            raise _missing(self.name_or_path, "it is not in the local hub cache and HF_HUB_OFFLINE is set")

    def _in_hub_cache(self) -> bool:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(self.name_or_path, "model_index.json"), str)

    def _pipeline(self, dtype: torch.dtype) -> Any:
        from diffusers import StableDiffusionPipeline

        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                str(Path(self.name_or_path).expanduser())
                if Path(self.name_or_path).expanduser().exists()
                else self.name_or_path,
                dtype=dtype,
                safety_checker=None,
                requires_safety_checker=False,
            )
        except (OSError, ValueError) as err:  # hub unreachable, repo missing, incomplete folder
            raise _missing(self.name_or_path, f"loading failed ({type(err).__name__}: {err})") from err
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    def lora_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            init_lora_weights="gaussian",
            target_modules=self.lora_targets,
        )

    def _with_lora(self, pipe: Any, checkpoint: Path | None) -> Any:
        """Frozen UNet plus a trainable adapter, initialised from `checkpoint` when there is one."""
        from diffusers.utils import convert_unet_state_dict_to_peft
        from peft import set_peft_model_state_dict

        pipe.unet.requires_grad_(False)
        pipe.unet.add_adapter(self.lora_config())
        if checkpoint is not None:
            state, _ = pipe.lora_state_dict(str(checkpoint), weight_name=LORA_FILE)
            state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
            state = convert_unet_state_dict_to_peft(state)
            result = set_peft_model_state_dict(pipe.unet, state, adapter_name="default")
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"{checkpoint} does not match this LoRA config: {result.unexpected_keys[:3]} ...")
        return pipe

    def save_lora(self, unet: Any, out_dir: Path, state: dict | None = None) -> None:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, state_dict=state))
        # The loop hands `finetune` a scratch folder and renames it when done, so no atomic step here.
        StableDiffusionPipeline.save_lora_weights(out_dir, unet_lora_layers=layers, weight_name=LORA_FILE)

    # ---- Policy interface --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, checkpoint: Path | None, prompts: Sequence[tuple[int, str]], sampler: DiffusionSampler, out_dir: Path
    ) -> list[Sample]:
        out_dir = Path(out_dir)
        pipe = self._pipeline(self.dtype)
        if checkpoint is not None:
            self._with_lora(pipe, Path(checkpoint))
            pipe.unet.to(self.dtype)
        pipe.scheduler = sampler.make_scheduler(pipe.scheduler.config)
        jobs = [(idx, prompt, j) for idx, prompt in prompts for j in range(sampler.K)]
        samples: list[Sample] = []
        for start in tqdm(range(0, len(jobs), sampler.batch_size), desc=f"sample {out_dir.name}", unit="batch"):
            batch = jobs[start : start + sampler.batch_size]
            images = pipe(
                prompt=[prompt for _, prompt, _ in batch],
                height=sampler.resolution,
                width=sampler.resolution,
                num_inference_steps=sampler.steps,
                guidance_scale=sampler.guidance_scale,
                generator=[sampler.generator(out_dir.name, idx, j) for idx, _, j in batch],
                output_type="pil",
            ).images
            for (idx, prompt, j), image in zip(batch, images):
                save_png(image, out_dir / image_name(idx, j))
                samples.append(Sample(prompt_idx=idx, prompt=prompt, response=image_name(idx, j), sample_idx=j))
        return samples

    @torch.no_grad()
    def _encode(
        self, pipe: Any, samples: Sequence[Sample], stage: Path
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VAE latents of the selected images, text-encoder states of their prompts, and of the empty prompt."""
        processor = pipe.image_processor
        generator = torch.Generator().manual_seed(self.seed)
        latents = []
        for s in samples:
            pixels = processor.preprocess(open_image(s, stage).convert("RGB")).to(self.device, pipe.vae.dtype)
            dist = pipe.vae.encode(pixels).latent_dist
            noise = torch.randn(dist.mean.shape, generator=generator).to(dist.mean)
            latents.append((dist.mean + dist.std * noise) * pipe.vae.config.scaling_factor)
        texts = [s.prompt for s in samples] + [""]
        tokens = pipe.tokenizer(
            texts,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        states = pipe.text_encoder(tokens)[0]
        return torch.cat(latents).float().cpu(), states[:-1].float().cpu(), states[-1:].float().cpu()

    def training_job(self, checkpoint: Path | None, samples: list[Sample], out_dir: Path) -> TrainingJob:
        from diffusers import DDPMScheduler

        pipe = self._pipeline(torch.float32)  # trainer.precision decides mixed precision; adapters stay fp32
        latents, states, empty = self._encode(pipe, samples, stage_dir_of(Path(out_dir)))
        unet = self._with_lora(pipe, Path(checkpoint) if checkpoint else None).unet
        unet.train()
        inputs = {
            "model": unet,
            "noise_scheduler": DDPMScheduler.from_config(pipe.scheduler.config),
            "inputs": latents,
            "conditions": {"encoder_hidden_states": states},
            "null_conditions": {"encoder_hidden_states": empty},
        }
        del pipe  # VAE and text encoder are no longer needed during training
        return TrainingJob(inputs, lambda folder, state: self.save_lora(unet, folder, state))

    def response_for_reward(self, sample: Sample, stage_dir: Path) -> Any:
        return open_image(sample, stage_dir)

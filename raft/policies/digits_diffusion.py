"""A diffusion policy small enough to pretrain and align on a laptop CPU: class-conditional UNet on 8x8 digits.

Pretraining (`pretrain()`) learns scikit-learn's digits, upsampled to `base_resolution`, from scratch and
writes `<pretrained_dir>/{unet,scheduler,pretrain.json}` atomically, so a killed run redoes it cleanly.
RAFT fine-tunes all weights (about 0.3M) but those `frozen` names (the presets freeze the class embedding):
LoRA on such a small convolutional net would leave too little capacity to adapt to a new resolution, and
full checkpoints of this size cost nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image
from tqdm.auto import tqdm

from raft.infra import strict_json
from raft.infra.atomic import atomic_dir, atomic_write_text
from raft.infra.locks import file_lock
from raft.modules.denoising import DenoisingModule
from raft.policies.base import Policy
from raft.policies.models.digits import NULL_CLASS, build_digits_unet, digit_of_prompt, digits_dataset
from raft.sampling.image import DiffusionSampler, image_name
from raft.sampling.images import open_image, save_png, stage_dir_of
from raft.sampling.samples import Sample
from raft.trainer.fit import fit
from raft.trainer.stage import TrainingJob


class DigitsDiffusionPolicy(Policy):
    modality = "image"

    def __init__(
        self,
        pretrained_dir: str,
        base_resolution: int = 16,
        channels: Sequence[int] = (16, 32, 32),
        pretrain_steps: int = 1000,
        pretrain_batch_size: int = 128,
        pretrain_lr: float = 2e-3,
        condition_dropout: float = 0.1,
        bf16: bool = True,
        seed: int = 0,
        expert_ratio: float = 0.0,
        trainable: Sequence[str] | None = None,
        frozen: Sequence[str] = (),
        pretrain_trainer: Callable[[], pl.Trainer] | None = None,
    ):
        if base_resolution < 8 or base_resolution % 4:
            raise ValueError(f"model.base_resolution must be a multiple of 4 and >= 8, got {base_resolution}")
        if len(channels) != 3 or any(c < 8 or c % 8 for c in channels):
            raise ValueError(f"model.channels must be three multiples of 8, got {list(channels)}")
        if pretrain_steps < 1 or pretrain_batch_size < 1 or pretrain_lr <= 0:
            raise ValueError("model.pretrain_steps, pretrain_batch_size and pretrain_lr must be positive")
        self.pretrained_dir = Path(pretrained_dir).expanduser()
        self.settings = {
            "base_resolution": base_resolution,
            "channels": list(channels),
            "pretrain_steps": pretrain_steps,
            "pretrain_batch_size": pretrain_batch_size,
            "pretrain_lr": pretrain_lr,
            "condition_dropout": condition_dropout,
            "seed": seed,
        }
        if expert_ratio < 0:
            raise ValueError(f"model.expert_ratio must be >= 0, got {expert_ratio}")
        self.bf16, self.seed, self.condition_dropout = bf16, seed, condition_dropout
        # Expert data source (paper appendix A.2): real training digits mixed into each fine-tuning set,
        # `expert_ratio` per selected image, of the digits the selected prompts ask for only (so held-out
        # digits never see extra data), at the selected images' size. Anchors backgrounds and strokes
        # against the drift of training on its own samples. Not part of `settings`: no re-pretraining.
        self.expert_ratio = expert_ratio
        # Which weights RAFT fine-tunes: those a `trainable` regex matches (re.search on parameter names;
        # None = all) and no `frozen` regex matches. Freezing the class embedding keeps the digits' codes
        # (the held-out ones included) fixed: fine-tuning on digits 0-4 can only change the shared
        # "how to draw" weights, so it does not re-map the shared code space to suit 0-4 only.
        self.trainable = [re.compile(p) for p in trainable] if trainable else None
        self.frozen = [re.compile(p) for p in frozen]
        # The Lightning Trainer pretraining runs with (model.pretrain_trainer: max_steps = pretrain_steps).
        self.pretrain_trainer = pretrain_trainer

    # ---- pretraining -------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.pretrain()  # before the run: the initial model is this policy's own, trained on the digits

    def pretrain(self) -> Path:
        """Train the initial model unless `pretrained_dir` already holds one made with the same settings.

        Under a file lock: the jobs of a parallel sweep share the folder, and one of them trains it."""
        with file_lock(self.pretrained_dir.with_name(self.pretrained_dir.name + ".lock")):
            return self._pretrain()

    def _pretrain(self) -> Path:
        marker = self.pretrained_dir / "pretrain.json"
        if marker.is_file():
            saved = json.loads(marker.read_text())
            if saved != self.settings:
                raise ValueError(
                    f"{self.pretrained_dir} was pretrained with {saved}, not {self.settings}: "
                    "delete it or set model.pretrained_dir to another folder"
                )
            return self.pretrained_dir
        if self.pretrain_trainer is None:
            raise ValueError(
                f"no pretrained digits model in {self.pretrained_dir} and no model.pretrain_trainer to make one"
            )
        s = self.settings
        pl.seed_everything(self.seed, verbose=False)
        unet = build_digits_unet(s["base_resolution"], tuple(s["channels"]))
        scheduler = self._noise_schedule()
        images, labels = digits_dataset(s["base_resolution"])
        module = DenoisingModule(
            unet,
            scheduler,
            images,
            {"class_labels": labels},
            null_conditions={"class_labels": torch.tensor([NULL_CLASS])},
            learning_rate=s["pretrain_lr"],
            weight_decay=0.0,
            batch_size=s["pretrain_batch_size"],
            condition_dropout=s["condition_dropout"],
            seed=self.seed,
        )
        fit(self.pretrain_trainer, module)
        with atomic_dir(self.pretrained_dir) as tmp:
            unet.save_pretrained(tmp / "unet")
            scheduler.save_pretrained(tmp / "scheduler")
            atomic_write_text(tmp / "pretrain.json", strict_json.dumps(self.settings, indent=1))
        return self.pretrained_dir

    @staticmethod
    def _noise_schedule() -> DDPMScheduler:
        # The cosine schedule suits small images: the linear one destroys them too early in the chain.
        return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)

    def _load(self, checkpoint: Path | None) -> tuple[UNet2DModel, Any]:
        if not (self.pretrained_dir / "pretrain.json").is_file():
            raise FileNotFoundError(
                f"no pretrained digits model in {self.pretrained_dir}: run pretrain() first "
                "(task=diffusion_raft does it) or set model.pretrained_dir"
            )
        unet = UNet2DModel.from_pretrained(Path(checkpoint or self.pretrained_dir) / "unet")
        scheduler = DDPMScheduler.from_pretrained(self.pretrained_dir / "scheduler")
        return unet, scheduler

    # ---- Policy interface --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, checkpoint: Path | None, prompts: Sequence[tuple[int, str]], sampler: DiffusionSampler, out_dir: Path
    ) -> list[Sample]:
        out_dir = Path(out_dir)
        unet, noise_schedule = self._load(checkpoint)
        unet.eval()
        jobs = [(idx, prompt, j) for idx, prompt in prompts for j in range(sampler.K)]
        samples: list[Sample] = []
        bar = tqdm(total=len(jobs), desc=f"sample {out_dir.name}", unit="img")
        for start in range(0, len(jobs), sampler.batch_size):
            batch = jobs[start : start + sampler.batch_size]
            labels = torch.tensor([digit_of_prompt(prompt) for _, prompt, _ in batch])
            noise = torch.cat(
                [
                    torch.randn(
                        1, 1, sampler.resolution, sampler.resolution, generator=sampler.generator(out_dir.name, idx, j)
                    )
                    for idx, _, j in batch
                ]
            )
            step_noise = sampler.generator(out_dir.name, batch[0][0], -1 - batch[0][2])
            scheduler = sampler.make_scheduler(noise_schedule.config)
            pixels = self._denoise(unet, scheduler, sampler, labels, noise, step_noise)
            for (idx, prompt, j), image in zip(batch, pixels):
                name = image_name(idx, j)
                save_png(_to_pil(image), out_dir / name)
                samples.append(Sample(prompt_idx=idx, prompt=prompt, response=name, sample_idx=j))
            bar.update(len(batch))
        bar.close()
        return samples

    def _denoise(self, unet, scheduler, sampler, labels, x, generator) -> torch.Tensor:
        scheduler.set_timesteps(sampler.steps)
        x = x * scheduler.init_noise_sigma
        guided = sampler.guidance_scale != 1.0
        class_labels = torch.cat([labels, torch.full_like(labels, NULL_CLASS)]) if guided else labels
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                eps = unet(inp, t, class_labels=class_labels).sample.float()
            if guided:
                cond, uncond = eps.chunk(2)
                eps = uncond + sampler.guidance_scale * (cond - uncond)
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return x.clamp(-1, 1)

    def training_job(self, checkpoint: Path | None, samples: list[Sample], out_dir: Path) -> TrainingJob:
        unet, noise_schedule = self._load(checkpoint)
        unet.train()
        self.select_trainable(unet)
        stage = stage_dir_of(out_dir)
        pixels = [_from_pil(open_image(s, stage)) for s in samples]
        if len({p.shape for p in pixels}) > 1:
            raise ValueError(f"selected images differ in size: {sorted({tuple(p.shape) for p in pixels})}")
        labels = torch.tensor([digit_of_prompt(s.prompt) for s in samples])
        inputs = torch.stack(pixels)
        if self.expert_ratio > 0:
            expert, expert_labels = self.expert_digits(labels, inputs.shape[-1], stage.name)
            inputs, labels = torch.cat([inputs, expert]), torch.cat([labels, expert_labels])
        module_inputs = {
            "model": unet,
            "noise_scheduler": noise_schedule,
            "inputs": inputs,
            "conditions": {"class_labels": labels},
            "null_conditions": {"class_labels": torch.tensor([NULL_CLASS])},
        }
        return TrainingJob(module_inputs, lambda folder, state: save_unet(unet, folder / "unet", state))

    def save_unchanged(self, checkpoint: Path | None, out_dir: Path) -> None:
        if checkpoint is not None:
            return super().save_unchanged(checkpoint, out_dir)
        unet, _ = self._load(None)
        unet.save_pretrained(Path(out_dir) / "unet")

    def select_trainable(self, unet: torch.nn.Module) -> int:
        """Freeze every parameter `trainable` does not name; returns how many weights stay trainable."""
        count = 0
        for name, param in unet.named_parameters():
            keep = self.trainable is None or any(p.search(name) for p in self.trainable)
            keep = keep and not any(p.search(name) for p in self.frozen)
            param.requires_grad_(keep)
            count += param.numel() if keep else 0
        if count == 0:
            raise ValueError("model.trainable / model.frozen leave no UNet parameter to fine-tune")
        return count

    def expert_digits(self, labels: torch.Tensor, resolution: int, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """round(expert_ratio * len(labels)) real digits drawn (seeded by stage) from the classes in `labels`."""
        images, targets = digits_dataset(resolution)
        pool = torch.nonzero(torch.isin(targets, labels.unique())).flatten()
        n = round(self.expert_ratio * len(labels))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + sum(map(ord, stage)))
        picked = pool[torch.randperm(len(pool), generator=g)[:n]]
        return images[picked], targets[picked]

    def response_for_reward(self, sample: Sample, stage_dir: Path) -> Image.Image:
        return open_image(sample, stage_dir)


def save_unet(unet: UNet2DModel, folder: Path, state: dict | None) -> None:
    """The fitted UNet (with the whole weights a sharding strategy gathered, when it did)."""
    if state is not None:
        unet.load_state_dict(state)
    unet.save_pretrained(folder)


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = ((image[0].float().cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="L")


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 127.5 - 1).unsqueeze(0)

"""PPO's inner optimisation as a Lightning module: a LoRA policy with a value head, updated on one rollout batch.

The outer loop (raft/tasks/ppo.py) samples and scores; this module turns a `Rollouts` batch into
KL-shaped per-token rewards, GAE advantages, and several epochs of clipped minibatch updates.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from raft.infra import strict_json
from raft.modules.rl.advantages import gae, whiten
from raft.modules.rl.kl_controller import AdaptiveKLController, FixedKLController
from raft.modules.rl.losses import policy_loss, value_loss
from raft.modules.rl.rewards import kl_shaped_rewards
from raft.modules.rl.rollouts import Rollouts, position_ids, token_logprobs
from raft.modules.traits import MethodTraits

log = logging.getLogger("raft")

STATE_FILE = "ppo_state.pt"
KL_FILE = "kl_controller.json"


class ValueHead(nn.Module):
    """A linear critic on the policy's last hidden state, kept in float32 whatever the model dtype."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # outside autocast: under bf16-mixed the values would be rounded to 8 mantissa bits
        with torch.autocast(hidden.device.type, enabled=False):
            return self.linear(hidden.float()).squeeze(-1)


class _Minibatches(Dataset):
    """Each item is one whole minibatch: a dict of row slices picked by an index tensor."""

    def __init__(self, tensors: dict[str, torch.Tensor], index_batches: list[torch.Tensor]):
        self.tensors, self.index_batches = tensors, index_batches

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        idx = self.index_batches[i]
        return {k: v[idx] for k, v in self.tensors.items()}


class PPOModule(pl.LightningModule):
    """Policy (causal LM, LoRA by default) + value head; reference = the same weights with the adapter off.

    Use: `rollouts = module.score_rollouts(...)`, `module.set_rollouts(rollouts)`, then
    A Trainer's one epoch (`max_epochs=1`) runs `ppo_epochs` passes of shuffled minibatch updates.
    """

    traits = MethodTraits(for_task="ppo")  # its fit is PPO's update on rollouts: another task's step cannot feed it

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        ppo_epochs: int = 4,
        minibatch_size: int = 8,
        clip_range: float = 0.2,
        clip_range_value: float = 0.2,
        vf_coef: float = 0.1,
        gamma: float = 1.0,
        lam: float = 0.95,
        kl_coef: float = 0.1,
        adaptive_kl: bool = True,
        kl_target: float = 6.0,
        kl_horizon: int = 10000,
        reward_baseline: float = 0.0,
        whiten_advantages: bool = True,
        max_grad_norm: float | None = 1.0,
        lora: bool = True,
        lora_rank: int = 16,
        lora_alpha: float = 32,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        kl_warn_negative: float = 1.0,
        kl_warn_max: float = 100.0,
        seed: int = 0,
    ):
        super().__init__()
        self.check_arguments(locals())
        self.save_hyperparameters(ignore=["model"])
        self.automatic_optimization = False  # PPO steps per minibatch and skips non-finite updates itself
        self.lora = lora
        if lora:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha,
                lora_dropout=lora_dropout,
                target_modules=list(lora_target_modules) if lora_target_modules else None,
                task_type="CAUSAL_LM",
            )
            self.policy = get_peft_model(model, config)  # base weights frozen, shared with the reference
            self.reference = None
        else:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
            self.policy = model.requires_grad_(True)
        self.value_head = ValueHead(model.config.hidden_size)
        self.kl_controller = (
            AdaptiveKLController(kl_coef, kl_target, kl_horizon) if adaptive_kl else FixedKLController(kl_coef)
        )
        self._optimizer: torch.optim.Optimizer | None = None
        self._batch: dict[str, torch.Tensor] | None = None
        self._updates = 0  # rollout batches seen: seeds the minibatch shuffle so a resumed run repeats it
        self.rollout_stats: dict[str, float] = {}
        self.step_stats: list[dict[str, float]] = []
        self.skipped_updates = 0

    # ------------------------------------------------------------------ forward passes

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The hyper-parameters' rules, also run before any model loads (raft/trainer/checks.py)."""
        positive = ["lr", "ppo_epochs", "minibatch_size", "lora_rank"]
        for name in positive:
            if not a[name] > 0:
                raise ValueError(f"module.{name} must be > 0, got {a[name]}")
        for name in ["clip_range", "clip_range_value", "vf_coef", "kl_warn_negative", "kl_warn_max"]:
            if not a[name] >= 0:
                raise ValueError(f"module.{name} must be >= 0, got {a[name]}")
        for name in ["gamma", "lam", "lora_dropout"]:
            if not 0 <= a[name] <= 1:
                raise ValueError(f"module.{name} must be in [0, 1], got {a[name]}")

    def _causal_lm(self, reference: bool) -> nn.Module:
        if reference and not self.lora:
            return self.reference
        return self.policy.get_base_model() if self.lora else self.policy

    def evaluate_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int, reference: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(log-probs [B, R], values [B, R] or None for the reference, logits [B, R, V]) of the response tokens.

        Logits are computed only on the response positions; the value of token t is read from the
        hidden state that predicts it (the state before t is generated).
        """
        lm = self._causal_lm(reference)
        adapter_off = self.policy.disable_adapter() if reference and self.lora else nullcontext()
        with adapter_off:
            hidden = lm.get_decoder()(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids(attention_mask),
                use_cache=False,
            ).last_hidden_state
            hidden = hidden[:, -response_length - 1 : -1]
            logits = lm.get_output_embeddings()(hidden)
        logprobs = token_logprobs(logits, input_ids[:, -response_length:])
        values = None if reference else self.value_head(hidden)
        return logprobs, values, logits

    @torch.no_grad()
    def score_rollouts(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
        scores: torch.Tensor,
        batch_size: int = 8,
    ) -> Rollouts:
        """Old log-probs, reference log-probs and values for sampled sequences, in eval mode (no dropout)."""
        was_training = self.training
        self.eval()
        device = self.device
        response_length = response_mask.shape[1]
        parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref_logprobs": [], "values": []}
        for i in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[i : i + batch_size].to(device)
            att = attention_mask[i : i + batch_size].to(device)
            logp, values, _ = self.evaluate_tokens(ids, att, response_length)
            ref_logp, _, _ = self.evaluate_tokens(ids, att, response_length, reference=True)
            parts["logprobs"].append(logp)
            parts["values"].append(values)
            parts["ref_logprobs"].append(ref_logp)
        self.train(was_training)
        return Rollouts(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            response_mask=response_mask.to(device),
            scores=scores.float().to(device),
            **{k: torch.cat(v) for k, v in parts.items()},
        )

    # ------------------------------------------------------------------ one PPO update

    def set_rollouts(self, rollouts: Rollouts) -> dict[str, float]:
        """Shape rewards with the current KL coefficient, compute advantages, adapt the coefficient."""
        r = rollouts.to("cpu")
        mask = r.response_mask.float()
        coef = self.kl_controller.value
        rewards, kl = kl_shaped_rewards(r.scores, r.logprobs, r.ref_logprobs, mask, coef, self.hparams.reward_baseline)
        advantages, returns = gae(rewards, r.values, mask, self.hparams.gamma, self.hparams.lam)
        if self.hparams.whiten_advantages:
            advantages = whiten(advantages, mask)
        sequence_kl = kl.sum(dim=1).mean().item()
        self._warn_on_kl(sequence_kl)
        self.kl_controller.update(sequence_kl, n_steps=len(r))
        self._batch = {
            "input_ids": r.input_ids,
            "attention_mask": r.attention_mask,
            "response_mask": mask,
            "logprobs": r.logprobs,
            "values": r.values,
            "advantages": advantages,
            "returns": returns,
        }
        self.rollout_stats = {
            "kl": sequence_kl,
            "kl_coef": coef,
            "kl_coef_next": self.kl_controller.value,
            "reward_mean": r.scores.mean().item(),
            "reward_std": r.scores.std(correction=0).item(),
            "response_tokens": mask.sum(dim=1).mean().item(),
        }
        self.step_stats = []
        self.skipped_updates = 0
        return dict(self.rollout_stats)

    def _warn_on_kl(self, sequence_kl: float) -> None:
        if not math.isfinite(sequence_kl) or sequence_kl > self.hparams.kl_warn_max:
            log.warning(
                "PPO: KL(policy || reference) = %.3f nats per response exceeds kl_warn_max=%.1f: the "
                "policy is running away from the reference; lower lr or raise kl_coef",
                sequence_kl,
                self.hparams.kl_warn_max,
            )
        elif sequence_kl < -self.hparams.kl_warn_negative:
            log.warning(
                "PPO: KL estimate = %.3f nats per response is negative beyond -%.1f: the sampled-token "
                "estimator is failing (often a precursor of divergence); check sampling settings",
                sequence_kl,
                self.hparams.kl_warn_negative,
            )

    def train_dataloader(self) -> DataLoader:
        if self._batch is None:
            raise RuntimeError("PPOModule.set_rollouts must be called before fitting")
        n = self._batch["input_ids"].shape[0]
        size = self.hparams.minibatch_size
        generator = torch.Generator().manual_seed(self.hparams.seed * 100003 + self._updates)
        index_batches = []
        for _ in range(self.hparams.ppo_epochs):  # each epoch is a fresh permutation cut into minibatches
            order = torch.randperm(n, generator=generator)
            index_batches += [order[i : i + size] for i in range(0, n, size)]
        self._updates += 1
        return DataLoader(_Minibatches(self._batch, index_batches), batch_size=None, shuffle=False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mask = batch["response_mask"]
        logprobs, values, logits = self.evaluate_tokens(batch["input_ids"], batch["attention_mask"], mask.shape[1])
        pol = policy_loss(logprobs, batch["logprobs"], batch["advantages"], mask, self.hparams.clip_range, logits)
        val = value_loss(values, batch["values"], batch["returns"], mask, self.hparams.clip_range_value)
        loss = pol.loss + self.hparams.vf_coef * val.loss
        if not torch.isfinite(loss):
            self._skip(f"loss is not finite (policy {pol.loss.item()}, value {val.loss.item()})")
            return
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.max_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        if not all(torch.isfinite(p.grad).all() for p in self._trainable() if p.grad is not None):
            optimizer.zero_grad()
            self._skip("gradients are not finite")
            return
        optimizer.step()
        stats = {
            "loss": loss.item(),
            "policy_loss": pol.loss.item(),
            "value_loss": val.loss.item(),
            "value_error": val.error.item(),
            "clip_fraction": pol.clip_fraction.item(),
            "value_clip_fraction": val.clip_fraction.item(),
            "approx_kl": pol.approx_kl.item(),
            "entropy": pol.entropy.item(),
        }
        self.step_stats.append(stats)
        self.log_dict({f"ppo/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False, batch_size=len(mask))

    def _skip(self, why: str) -> None:
        self.skipped_updates += 1
        log.warning("PPO: skipping a minibatch update because its %s", why)

    def on_train_start(self) -> None:
        if self.reference is not None:
            self.reference.eval()  # Lightning switched everything to train mode; the reference stays frozen

    def update_stats(self) -> dict[str, float]:
        """Rollout statistics and the mean of each minibatch statistic over the last update."""
        stats = dict(self.rollout_stats)
        for key in self.step_stats[0] if self.step_stats else []:
            stats[key] = sum(s[key] for s in self.step_stats) / len(self.step_stats)
        stats["skipped_updates"] = self.skipped_updates
        return stats

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One optimizer for the whole run, so Adam's moments carry over between rollout batches.
        if self._optimizer is None:
            self._optimizer = torch.optim.AdamW(
                self._trainable(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
            )
        return self._optimizer

    # ------------------------------------------------------------------ saving

    def save_state(self, folder: Path) -> None:
        """Everything a resumed run needs: trainable weights, value head, optimizer, KL coefficient."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        trainable = {n: p.detach().cpu() for n, p in self.named_parameters() if p.requires_grad}
        optimizer = self.configure_optimizers().state_dict()
        torch.save({"trainable": trainable, "optimizer": optimizer, "updates": self._updates}, folder / STATE_FILE)
        (folder / KL_FILE).write_text(strict_json.dumps(self.kl_controller.state_dict()))

    def load_state(self, folder: Path) -> None:
        folder = Path(folder)
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        missing = set(n for n, p in self.named_parameters() if p.requires_grad) - set(state["trainable"])
        if missing:
            raise ValueError(
                f"{folder}: PPO state lacks {sorted(missing)[:3]}... (was it saved with other LoRA settings?)"
            )
        self.load_state_dict(state["trainable"], strict=False)
        self.configure_optimizers().load_state_dict(state["optimizer"])
        self._updates = state["updates"]
        self.kl_controller.load_state_dict(json.loads((folder / KL_FILE).read_text()))

    def save_policy(self, folder: Path, tokenizer=None, base: str | None = None) -> None:
        """A LoRA adapter folder (or a full model folder without LoRA) that CausalLMPolicy.load reads.

        `base`: the checkpoint the adapter was trained on (e.g. a LoRA SFT folder, itself an adapter),
        recorded so that loading stacks SFT and PPO instead of putting PPO's adapter on the raw base.
        """
        if self.lora and base is not None:
            self.policy.peft_config["default"].base_model_name_or_path = str(base)
        self.policy.save_pretrained(Path(folder))
        if tokenizer is not None:
            tokenizer.save_pretrained(Path(folder))

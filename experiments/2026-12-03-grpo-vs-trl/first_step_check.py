"""Issue #25 diagnosis (2026-12-03): raft's whole fit-path GRPO update on a real stage (one AdamW step, dapo, 8 x 8
micro-batches, clip 1.0) against the sign of a hand-computed dapo gradient on the same rows: Adam's first step is
~ lr * sign(g), so the two agree weight by weight when raft weighs and steps as GRPO defines.

    PYTHONPATH=. python experiments/2026-12-03-grpo-vs-trl/first_step_check.py <run>/iter_000 <scratch folder>
"""

import functools
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from raft.infra.model_cache import cache_root
from raft.modules.grpo import GRPOModule
from raft.policies.causal_lm import CausalLMPolicy
from raft.sampling.samples import read_samples

torch.manual_seed(0)
stage = Path(sys.argv[1])
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
samples = read_samples(stage / "selected.jsonl")
policy = CausalLMPolicy(
    "smollm2-135m-instruct", sample_dtype="float32", device="cpu", max_length=256, chat_template=False
)
base = load_file(str(cache_root() / "smollm2-135m-instruct" / "model.safetensors"))

# (a) independent gradient: -sum_i A_i sum_t grad log p(y_it) / total tokens
model, tok = policy.load(None, "float32", trainable=True)
r = torch.tensor([s.reward for s in samples], dtype=torch.float64)
groups = {}
for i, s in enumerate(samples):
    groups.setdefault(s.prompt_idx, []).append(i)
A = torch.zeros(len(samples), dtype=torch.float64)
for idx in groups.values():
    g = r[idx]
    A[idx] = (g - g.mean()) / (g.std() + 1e-4)
ntok = sum(len(s.response_ids) for s in samples)
t0 = time.time()
model.train()
for i, s in enumerate(samples):
    if A[i] == 0:
        continue
    ids = torch.tensor([list(s.prompt_ids) + list(s.response_ids)])
    logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1]
    lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(s.response_ids).unsqueeze(-1)).sum()
    (-(A[i].float()) * lp / ntok).backward()
grad = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
print(
    "manual grad norm",
    torch.sqrt(sum((g.double() ** 2).sum() for g in grad.values())).item(),
    "s",
    time.time() - t0,
    flush=True,
)
del model

# (b) raft's fit path
module = functools.partial(
    GRPOModule, lr=5e-5, batch_size=8, scheduler="constant", temperature=1.0, loss_type="dapo", max_completion_length=32
)
trainer = functools.partial(
    pl.Trainer,
    max_epochs=1,
    accumulate_grad_batches=8,
    gradient_clip_val=1.0,
    precision="32-true",
    logger=False,
    enable_checkpointing=False,
    accelerator="cpu",
    devices=1,
    enable_progress_bar=False,
    enable_model_summary=False,
)
t0 = time.time()
policy.finetune(None, samples, out, module, trainer)
print("fit s", time.time() - t0, flush=True)
after = load_file(str(out / "model.safetensors"))
num = den_d = den_s = 0.0
agree = total = 0
for n, g in grad.items():
    key = n if n in after else None
    if key is None:
        print("missing", n)
        continue
    d = (after[key].float() - base[key].float()).flatten()
    s = (-torch.sign(g)).flatten() * 5e-5
    num += (d * s).sum().item()
    den_d += (d * d).sum().item()
    den_s += (s * s).sum().item()
    nz = g.flatten() != 0
    agree += ((torch.sign(d) == torch.sign(s)) & nz).sum().item()
    total += nz.sum().item()
print("cos(raft delta, -lr*sign(manual grad))", num / (den_d**0.5 * den_s**0.5), "sign agreement", agree / total)

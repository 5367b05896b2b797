"""Issue #25's next check, not yet run to its end: TRL's GRPOTrainer takes its one optimiser step on raft's stage-0
batch (its generation replaced by raft's samples); the result is compared with raft's own update on the same batch
(first_step_check.py's scratch folder) and both are evaluated by raft's evaluator. On 2026-12-03 the step had not
finished after 80 minutes on the shared 2-core CPU (one thread), nor after 25 minutes on the idle one (two threads).

    PYTHONPATH=. python experiments/2026-12-03-grpo-vs-trl/trl_on_raft_batch.py <run>/iter_000 <raft update> <out>
"""

import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from safetensors.torch import load_file
from trl import GRPOConfig, GRPOTrainer

import raft.cli.resolvers  # noqa
from raft.infra.model_cache import cache_root
from raft.policies.models import load_causal_lm
from raft.sampling.samples import read_samples

torch.set_num_threads(1)
stage, raft_out, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
SET = [
    "experiment=arithmetic_raft",
    "task.batch_size=8",
    "sampler.K=8",
    "evaluator.n_prompts=64",
    "evaluator.best_of_k=1",
    "seed=0",
]
with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "raft" / "conf"), version_base="1.3"):
    cfg = compose("config", overrides=SET)
samples = read_samples(stage / "selected.jsonl")
model, tok = load_causal_lm("smollm2-135m-instruct", "float32")
pad = tok.pad_token_id
r = torch.tensor([s.reward for s in samples])
g = r.view(-1, 8)
assert all(len({s.prompt_idx for s in samples[i * 8 : (i + 1) * 8]}) == 1 for i in range(8))
adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).flatten()
P = [list(s.prompt_ids) for s in samples]
C = [list(s.response_ids) for s in samples]
wp, wc = max(map(len, P)), max(map(len, C))
batch = {
    "prompt_ids": torch.tensor([[pad] * (wp - len(p)) + p for p in P]),
    "prompt_mask": torch.tensor([[0] * (wp - len(p)) + [1] * len(p) for p in P]),
    "completion_ids": torch.tensor([c + [pad] * (wc - len(c)) for c in C]),
    "completion_mask": torch.tensor([[1] * len(c) + [0] * (wc - len(c)) for c in C]),
    "advantages": adv,
    "num_items_in_batch": torch.tensor(float(sum(map(len, C)))),
}


class Replay(GRPOTrainer):
    def _generate_and_score_completions(self, inputs):
        return dict(batch)


config = GRPOConfig(
    output_dir=str(out / "trainer"),
    max_steps=1,
    learning_rate=5e-5,
    lr_scheduler_type="constant",
    per_device_train_batch_size=8,
    gradient_accumulation_steps=8,
    num_generations=8,
    max_completion_length=32,
    temperature=1.0,
    beta=0.0,
    shuffle_dataset=False,
    use_cpu=True,
    seed=0,
    report_to=[],
    save_strategy="no",
    logging_steps=1,
    disable_tqdm=True,
)
trainer = Replay(
    model=model,
    reward_funcs=lambda prompts, completions, **_: [0.0] * len(prompts),
    args=config,
    train_dataset=Dataset.from_dict({"prompt": ["x"] * 64}),
    processing_class=tok,
)
t0 = time.time()
trainer.train()
print("trl step s", time.time() - t0, flush=True)
model.save_pretrained(out / "checkpoint")
tok.save_pretrained(out / "checkpoint")
base = load_file(str(cache_root() / "smollm2-135m-instruct" / "model.safetensors"))
a, b = load_file(str(out / "checkpoint" / "model.safetensors")), load_file(str(raft_out / "model.safetensors"))
num = da = db = 0.0
for k in base:
    if k in a and k in b:
        x, y = (a[k].float() - base[k].float()).flatten(), (b[k].float() - base[k].float()).flatten()
        num += (x * y).sum().item()
        da += (x * x).sum().item()
        db += (y * y).sum().item()
print("cos(TRL delta, raft delta) on the same batch", num / (da * db) ** 0.5, "norms", da**0.5, db**0.5, flush=True)
data, evaluator, policy = (instantiate(cfg[k]) for k in ("data", "evaluator", "model"))
test = data.prompts("test")
for name, folder in (("trl_on_raft_batch", out / "checkpoint"), ("raft_fit_path", raft_out)):
    res = evaluator.evaluate(policy, folder, test, None, out / f"eval_{name}", shared=False)
    print(name, "accuracy", res.get("accuracy"), flush=True)

"""RAFT and its relatives against TRL's GRPOTrainer on one verifiable task, side by side.

Every method starts from the same model and sees the same prompts in the same order, K samples each, with the
same sampling settings, lengths and exact-match reward, all read from one raft configuration (a preset plus
`--set` overrides). raft's methods run through raft's own entry point (`python -m raft ...`), TRL's GRPO in a
worker process of this script; both are evaluated after every step by raft's evaluator on the same held-out
problems. For each method it prints held-out accuracy per step, the training seconds it took to get there
(evaluation excluded), seconds per step split into sampling / scoring / training, and peak RSS, and writes
`results.json` and `accuracy_vs_seconds.png` into `--out`.

    pip install -e ".[bench]"
    python benchmarks/raft_vs_grpo.py --steps 4                         # full size: see benchmarks/README.md
    python benchmarks/raft_vs_grpo.py --method raft= --method "raftpp=module=raftpp selector=threshold" \
        --method grpo=task=grpo                                        # raft's methods as override strings
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's raft, also when another one is installed
FIXED = ["evaluator.every=1", "task.track_kl=false"]  # every step evaluated; no KL samples (TRL draws none at beta 0)


def compose(preset: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import raft.cli.resolvers  # noqa: F401  (raft's ${raft_with:...} and ${raft_asset:...})

    with initialize_config_dir(config_dir=str(ROOT / "raft" / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=[*preset_override(preset), *overrides], return_hydra_config=True)


def preset_override(preset: str) -> list[str]:
    """`experiment=<preset>`, or nothing for `--preset none` (the root config's defaults plus `--set`)."""
    return [] if preset == "none" else [f"experiment={preset}"]


def run_measured(command: list[str], log: Path) -> dict:
    """Run a process to its end: its exit status, wall seconds and peak RSS (its own VmHWM, via wait4)."""
    started = time.time()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "process_wall_s": round(time.time() - started, 1),
        "process_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


# -- raft's methods: `python -m raft`, each stage's seconds as the run records them ---------------------
STAGES = ("sampling", "scoring", "training", "kl")


def stage_seconds(metrics: dict) -> dict:
    """Sampling / scoring / training seconds of one iteration (its metrics' `seconds_<stage>`); the rest of the
    iteration's wall time is its evaluation. (File times would miss a checkpoint the run deleted later.)"""
    out = {name: round(metrics.get(f"seconds_{name}", 0.0), 1) for name in STAGES}
    out["evaluation"] = round(metrics["wall_time_s"] - sum(out.values()), 1)
    return out


def run_raft(name: str, method: str, args, run_dir: Path) -> dict:
    command = [sys.executable, "-m", "raft", *preset_override(args.preset), *args.set, *shlex.split(method), *FIXED]
    command += [f"task.iterations={args.steps}", f"hydra.run.dir={run_dir}"]
    if run_dir.exists():  # raft resumes a run folder: its finished steps are read back, not run again
        print(f"  {run_dir} exists: its finished steps are kept (delete the folder to run them again)", flush=True)
    process = run_measured(command, run_dir.with_suffix(".log"))
    if process["returncode"] != 0:
        raise SystemExit(f"{name} failed (exit {process['returncode']}): see {run_dir.with_suffix('.log')}")
    return raft_result(name, method, args.steps, run_dir, process)


def raft_result(name: str, method: str, n_steps: int, run_dir: Path, process: dict) -> dict:
    before = json.loads((run_dir / "evaluation.json").read_text())["before"]
    steps = []
    for t in range(n_steps):
        metrics = json.loads((run_dir / f"iter_{t:03d}" / "metrics.json").read_text())
        seconds = stage_seconds(metrics)
        steps.append(
            {
                "step": t + 1,
                "accuracy": metrics.get("eval_accuracy"),
                "pass_at_k": metrics.get("eval_pass_at_k"),
                "train_reward": metrics.get("policy_reward"),
                "step_s": round(metrics["wall_time_s"] - seconds["evaluation"], 1),
                **seconds,
                "peak_rss_mb": step_peak(metrics),
                "task_peak_rss_mb": metrics.get("peak_rss_mb"),  # so far, every evaluation included
            }
        )
    return {"method": name, "overrides": method, "start_accuracy": before.get("accuracy"), "steps": steps, **process}


def step_peak(metrics: dict) -> float | None:
    """An iteration's own peak RSS, its evaluation apart, as TRL's step is measured; runs recorded before raft
    wrote `peak_rss_mb_step` (commit fb18974, 2026-12-02) have the task's peak so far, starting evaluation included."""
    return metrics.get("peak_rss_mb_step", metrics.get("peak_rss_mb"))


def trl_worker(args) -> None:
    import torch
    from datasets import Dataset
    from hydra.utils import instantiate
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from raft.infra.resources import peak_memory, reset_peak_memory
    from raft.policies.models import load_causal_lm
    from raft.tasks.runner import prompt_batch

    cfg = compose(args.preset, args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.task.get("torch_threads"):
        torch.set_num_threads(cfg.task.torch_threads)
    data, reward, evaluator, policy = (instantiate(cfg[g]) for g in ("data", "reward", "evaluator", "model"))
    sampler, b, K = cfg.sampler, cfg.task.batch_size, cfg.sampler.K
    train = data.prompts("train")
    order = [p for t in range(args.steps) for _, p in prompt_batch(train, t, b, cfg.seed)]  # raft's walk D_t
    as_prompt = (lambda p: [{"role": "user", "content": p}]) if cfg.model.chat_template else (lambda p: p)
    dataset = Dataset.from_dict({"prompt": [as_prompt(p) for p in order], "problem": order})
    test = data.prompts("test")

    def task_reward(prompts, completions, problem, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return reward(problem, texts)

    timing = {"sampling": 0.0, "scoring": 0.0}

    class TimedGRPO(GRPOTrainer):
        def _generate(self, *a, **k):
            started = time.perf_counter()
            try:
                return super()._generate(*a, **k)
            finally:
                timing["sampling"] += time.perf_counter() - started

        def _calculate_rewards(self, *a, **k):
            started = time.perf_counter()
            try:
                return super()._calculate_rewards(*a, **k)
            finally:
                timing["scoring"] += time.perf_counter() - started

    steps, clock = [], {}

    def evaluate(model, tokenizer, step: int) -> dict:
        folder = None
        if model is not None:
            folder = out / "checkpoint"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        return evaluator.evaluate(policy, folder, test, None, out / f"eval_{step:03d}", shared=folder is None)

    class Measure(TrainerCallback):
        def on_step_begin(self, *_, **__):
            reset_peak_memory()
            timing.update(sampling=0.0, scoring=0.0)
            clock["start"] = time.perf_counter()

        def on_step_end(self, a, state, control, model=None, processing_class=None, **_):
            step_s = time.perf_counter() - clock["start"]
            peak = peak_memory()["peak_rss_mb"]  # before the evaluation below loads its own copy
            result = evaluate(model, processing_class, state.global_step)
            steps.append(
                {
                    "step": state.global_step,
                    "accuracy": result.get("accuracy"),
                    "pass_at_k": result.get("pass_at_k"),
                    "step_s": round(step_s, 1),
                    "sampling": round(timing["sampling"], 1),
                    "scoring": round(timing["scoring"], 1),
                    "training": round(step_s - timing["sampling"] - timing["scoring"], 1),
                    "peak_rss_mb": peak,
                }
            )
            (out / "steps.json").write_text(json.dumps(steps, indent=2))

    start = evaluate(None, None, 0)
    model, tokenizer = load_causal_lm(cfg.model.name_or_path, "float32")
    if sampler.stop:  # TRL stops at end-of-sequence ids only: every token that writes a stop string is one
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [tokenizer.eos_token_id])
        vocab = range(len(tokenizer))
        eos += [i for i in vocab if any(stop in tokenizer.decode([i]) for stop in sampler.stop) and i not in eos]
        model.generation_config.eos_token_id = eos
    micro = min(args.trl_micro_batch, b * K)
    if (b * K) % micro:
        raise SystemExit(f"--trl-micro-batch {micro} must divide b * K = {b * K}")
    config = GRPOConfig(
        output_dir=str(out / "trainer"),
        max_steps=args.steps,
        learning_rate=args.trl_lr if args.trl_lr is not None else cfg.module.lr,
        lr_scheduler_type="constant",
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=b * K // micro,  # one optimizer step per b prompts x K samples, as RAFT's stage
        num_generations=K,
        max_completion_length=sampler.max_new_tokens,
        temperature=sampler.temperature,
        top_k=sampler.top_k,
        top_p=sampler.top_p,
        beta=0.0,
        shuffle_dataset=False,
        bf16=str(cfg.trainer.precision).startswith("bf16"),
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = TimedGRPO(
        model=model,
        reward_funcs=task_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Measure()],
    )
    trainer.train()
    (out / "result.json").write_text(json.dumps({"start_accuracy": start.get("accuracy"), "steps": steps}))


def run_trl(args, out: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--trl-worker", "--out", str(out)]
    command += ["--preset", args.preset, "--steps", str(args.steps), "--trl-micro-batch", str(args.trl_micro_batch)]
    command += ["--trl-lr", str(args.trl_lr)] if args.trl_lr is not None else []
    command += [f"--set={s}" for s in args.set]
    process = run_measured(command, out.with_suffix(".log"))
    if process["returncode"] != 0:
        raise SystemExit(f"TRL GRPO failed (exit {process['returncode']}): see {out.with_suffix('.log')}")
    result = json.loads((out / "result.json").read_text())
    return {"method": "trl_grpo", "overrides": "GRPOTrainer", **result, **process}


# -- report --------------------------------------------------------------------------------------
def table(results: list[dict], samples_per_step: int) -> str:
    head = (
        "| method | step | samples | held-out accuracy | seconds to reach it | step s | sampling | scoring | training |"
    )
    lines = [head + " peak RSS (MiB) |", "|---|" + "---:|" * 9]
    for r in results:
        lines.append(f"| {r['method']} | 0 | 0 | {_f(r['start_accuracy'])} | 0 | | | | | |")
        total = 0.0
        for s in r["steps"]:
            total += s["step_s"]
            lines.append(
                f"| {r['method']} | {s['step']} | {s['step'] * samples_per_step} | {_f(s['accuracy'])} | {total:.0f} | "
                f"{s['step_s']:.0f} | {s['sampling']:.0f} | {s['scoring']:.0f} | {s['training']:.0f} | "
                f"{s['peak_rss_mb']:.0f} |"
            )
    return "\n".join(lines)


def against_trl(results: list[dict]) -> list[str]:
    """The issue's criteria, per raft method, as ratios to TRL: for each of TRL's steps, the seconds the method took
    to reach the accuracy TRL had after that many samples; peak RSS per step; step time."""
    trl = next((r for r in results if r["method"] == "trl_grpo"), None)
    if trl is None or not trl["steps"]:
        return []
    trl_clock = elapsed(trl["steps"])
    trl_rss = min(s["peak_rss_mb"] for s in trl["steps"])  # its later steps also hold what its evaluation left
    lines = []
    for r in results:
        if r is trl or not r["steps"]:
            continue
        clock, reached = elapsed(r["steps"]), []
        for t, target in zip(trl_clock, trl["steps"]):
            when = next((c for c, s in zip(clock, r["steps"]) if _at_least(s["accuracy"], target["accuracy"])), None)
            ratio = f"{when:.0f} s = {when / t:.2f}x" if when is not None else "not reached"
            reached.append(f"step {target['step']} ({_f(target['accuracy'])} in {t:.0f} s): {ratio}")
        rss = max(s["peak_rss_mb"] for s in r["steps"])
        step = clock[-1] / len(clock) / (trl_clock[-1] / len(trl_clock))
        lines.append(
            f"{r['method']}: TRL's accuracy after {'; '.join(reached)}; "
            f"peak RSS per step {rss / trl_rss:.2f}x TRL's; step time {step:.2f}x TRL's"
        )
    return lines


def elapsed(steps: list[dict]) -> list[float]:
    """Training seconds from the start to the end of each step."""
    clock, total = [], 0.0
    for s in steps:
        total += s["step_s"]
        clock.append(total)
    return clock


def _at_least(accuracy, target) -> bool:
    return accuracy is not None and target is not None and accuracy >= target


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        seconds, total = [0.0], 0.0
        for s in r["steps"]:
            total += s["step_s"]
            seconds.append(total)
        ax.plot(seconds, [r["start_accuracy"]] + [s["accuracy"] for s in r["steps"]], "o-", label=r["method"])
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("held-out accuracy (pass@1)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def shared_settings(args) -> dict:
    """What every method of one comparison shares; results run under other settings do not mix with them.
    The number of steps is each run's own (`iterations`): a method may go on past TRL's last step, and the
    criteria still compare it at TRL's sample counts."""
    return {"preset": args.preset, "set": list(args.set)}


def iterations_of(result: dict, default: int) -> int:
    """The steps a result ran (results.json of 2026-12-02 recorded them among the shared settings)."""
    return result.get("iterations", result.get("shared", {}).get("steps", default))


def run_all(args, out: Path) -> list[dict]:
    results = []
    shared = " ".join([*preset_override(args.preset), *args.set])
    for spec in args.method or ["raft="]:
        name, _, overrides = spec.partition("=")
        print(f"running {name}: python -m raft {shared} {overrides}", flush=True)
        results.append(run_raft(name, overrides, args, out / name))
    if not args.no_trl:
        print("running TRL GRPOTrainer", flush=True)
        results.append(run_trl(args, out / "trl_grpo"))
    return [{**with_process_peak(r), "shared": shared_settings(args), "iterations": args.steps} for r in results]


def with_process_peak(result: dict) -> dict:
    """wait4's peak counts only what came after the process's last VmHWM reset (each stage resets it, so that it
    reports its own peak): the process's peak is the larger of that and its steps' peaks."""
    peaks = [s[k] for s in result["steps"] for k in ("peak_rss_mb", "task_peak_rss_mb") if s.get(k) is not None]
    return {**result, "process_peak_rss_mb": max([result["process_peak_rss_mb"], *peaks])}


def report_again(result: dict, args, out: Path) -> dict:
    """A result of results.json with its steps read again from its run folder; what else it recorded (its
    process's wall time and RSS as measured, its settings, a note) stays."""
    if result["method"] == "trl_grpo":
        fresh = json.loads((out / "trl_grpo" / "result.json").read_text())
    else:
        steps = iterations_of(result, args.steps)  # as it ran, not this command's --steps
        fresh = raft_result(result["method"], result["overrides"], steps, out / result["method"], {})
    return {**result, **fresh}


def merged(earlier: list[dict], new: list[dict]) -> list[dict]:
    """`earlier` results with `new` ones added, a method run again replacing its earlier result in place."""
    for r in earlier:
        theirs = {k: v for k, v in r.get("shared", {}).items() if k != "steps"}
        if new and (not theirs or theirs != new[0]["shared"]):
            raise SystemExit(
                f"--add: {r['method']} in results.json ran with {theirs or 'unrecorded settings'}, these with "
                f"{new[0]['shared']}; use the same --preset and --set, or another --out"
            )
    by_name = {r["method"]: r for r in new}
    kept = [by_name.pop(r["method"], r) for r in earlier]
    return kept + list(by_name.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="arithmetic_raft", help="raft experiment preset all methods share ('none': the root config)"
    )
    parser.add_argument("--set", action="append", default=[], help="raft override for every method (repeatable)")
    parser.add_argument("--steps", type=int, default=4, help="RAFT iterations = GRPO optimizer steps (each run's own)")
    parser.add_argument(
        "--method",
        action="append",
        default=None,
        help="NAME=OVERRIDES, a raft method as override strings (repeatable; default: raft=)",
    )
    parser.add_argument("--no-trl", action="store_true", help="skip TRL's GRPOTrainer")
    parser.add_argument("--report", action="store_true", help="report the runs already in --out again, run nothing")
    parser.add_argument(
        "--add", action="store_true", help="add these runs to the results already in --out (same --preset and --set)"
    )
    parser.add_argument("--trl-lr", type=float, default=None, help="GRPO learning rate (default: raft's module.lr)")
    parser.add_argument("--trl-micro-batch", type=int, default=8, help="sequences per GRPO forward/backward")
    parser.add_argument("--out", default="outputs/benchmarks/raft_vs_grpo")
    parser.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_worker:
        return trl_worker(args)
    out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier = json.loads((out / "results.json").read_text()) if (args.report or args.add) else []
    if args.report and earlier and "shared" in earlier[0]:  # report them under the settings they ran with
        args.preset, args.set = (earlier[0]["shared"][k] for k in ("preset", "set"))
    cfg = compose(args.preset, args.set)
    if args.report:  # the finished runs in --out again (e.g. after a change to this report), nothing rerun
        results = [report_again(r, args, out) for r in earlier]
    else:
        results = merged(earlier, run_all(args, out))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "accuracy_vs_seconds.png")
    print(table(results, cfg.task.batch_size * cfg.sampler.K))
    for line in against_trl(results):
        print(line)
    for r in results:
        print(f"{r['method']}: process wall {r['process_wall_s']:.0f} s, peak RSS {r['process_peak_rss_mb']:.0f} MiB")
    print(f"wrote {out / 'results.json'} and {out / 'accuracy_vs_seconds.png'}")


if __name__ == "__main__":
    main()

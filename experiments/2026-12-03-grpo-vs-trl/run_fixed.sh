#!/bin/bash
# Issue #25 again after 7a8b767 (raft's CLI now keeps one AdamW over a GRPO run, as TRL does): raft's GRPO at one
# optimiser step per RAFT step on seeds 0-2, TRL's GRPOTrainer on seed 2 (seeds 0 and 1's TRL runs stand: TRL's side
# did not change). Two lanes at once on a 2-core machine, one torch thread per run.
#   bash experiments/2026-12-03-grpo-vs-trl/run_fixed.sh <raft checkout> <out folder>
CHECKOUT=${1:-.}; OUT=${2:-outputs/benchmarks/grpo_seeds}
cd "$CHECKOUT"
SET="--set task.batch_size=8 --set sampler.K=8 --set task.torch_threads=1 --set evaluator.n_prompts=64 --set evaluator.best_of_k=1 --set model.gradient_checkpointing=true"
GRPO="grpo_1step=task=grpo module.batch_size=8 trainer.accumulate_grad_batches=8"
run() {  # seed, extra flags
  python benchmarks/raft_vs_grpo.py --steps 3 $SET --set seed=$1 --method "$GRPO" "${@:2}" --out "$OUT/seed$1" \
    >> "$OUT/seed$1.txt" 2>&1
}
( run 2 ) &
( run 0 --add --no-trl; run 1 --add --no-trl ) &
wait
echo done > "$OUT/DONE_fixed"

#!/bin/bash
# raft GRPO at one optimiser step per RAFT step against TRL's GRPOTrainer, 3 seeds (issue #25's Done-when).
cd /work/main
SET="--set task.batch_size=8 --set sampler.K=8 --set task.torch_threads=1 --set evaluator.n_prompts=64 --set evaluator.best_of_k=1 --set model.gradient_checkpointing=true"
GRPO="grpo_1step=task=grpo module.batch_size=8 trainer.accumulate_grad_batches=8"
for S in 0 1 2; do
  EXTRA=()
  [ $S = 0 ] && EXTRA=(--method "reinforce_rej=task=reinforce_rej")
  python benchmarks/raft_vs_grpo.py --steps 3 $SET --set seed=$S --method "$GRPO" "${EXTRA[@]}" \
    --out outputs/benchmarks/grpo_seeds/seed$S > outputs/benchmarks/grpo_seeds/seed$S.txt 2>&1
done
echo done > outputs/benchmarks/grpo_seeds/DONE

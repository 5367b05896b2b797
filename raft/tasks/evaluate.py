"""`task=evaluate`: the paper's table columns for one checkpoint on held-out prompts.

`checkpoint` is a folder raft wrote (e.g. <run>/iter_003/checkpoint) or null for the configured
model itself (which may be a hub id or any model folder: set model.name_or_path).
`responses: chosen` (or `rejected`) scores the dataset's own responses instead: Table 3's HH-RLHF rows.
"""

from __future__ import annotations

from pathlib import Path

from raft.infra import strict_json
from raft.infra.atomic import atomic_write_text, check_checkpoint
from raft.infra.console import show
from raft.report.tables import COLUMNS, Row, markdown_table


class EvaluateTask:
    def __init__(
        self,
        policy,
        checkpoint: str | None,
        data,
        evaluator,
        output_dir: str,
        split: str = "test",
        seed: int = 0,
        responses: str = "model",
    ):
        if responses not in ("model", "chosen", "rejected"):
            raise ValueError(f"task.responses must be 'model', 'chosen' or 'rejected', got {responses!r}")
        if responses != "model" and data.references(split) is None:  # prompts only: nothing to score
            raise ValueError(
                f"task.responses={responses} needs preference-pair data (data=hh_rlhf), got {type(data).__name__}"
            )
        if checkpoint is not None:  # null evaluates the model itself
            check_checkpoint(Path(checkpoint), "task.checkpoint")
        if split not in ("train", "test"):
            raise ValueError(f"task.split must be 'train' or 'test', got {split!r}")
        self.policy, self.data, self.evaluator, self.split, self.seed = policy, data, evaluator, split, seed
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.output_dir, self.responses = Path(output_dir), responses

    def run(self) -> dict:
        import pytorch_lightning as pl

        pl.seed_everything(self.seed, workers=True, verbose=False)
        out_dir = self.output_dir / f"eval_{self.split}"
        if self.responses == "model":
            metrics = self.evaluator.evaluate(
                self.policy, self.checkpoint, self.data.prompts(self.split), self.data.references(self.split), out_dir
            )
        else:
            pairs = self.data.pairs(self.split)
            metrics = self.evaluator.evaluate_responses(
                [p.prompt for p in pairs], [getattr(p, self.responses) for p in pairs], out_dir
            )
        # Same shape as a RAFT run's evaluation.json, so `raft report` lists evaluate runs too.
        label = (
            f"dataset: {self.responses}"
            if self.responses != "model"
            else str(self.checkpoint)
            if self.checkpoint
            else "initial model"
        )
        atomic_write_text(
            self.output_dir / "evaluation.json",
            strict_json.dumps({"after": metrics, "checkpoint": str(self.checkpoint), "responses": label}, indent=2),
        )
        row = Row(label, "after", {k: [float(metrics[k])] if k in metrics else [] for k, _, _ in COLUMNS}, 1)
        lines = [f"{self.split} split, {metrics.get('n')} prompts:", markdown_table([row]).split("\n\n")[0]]
        if "best_of_k_reward" in metrics:
            lines.append(f"best-of-{self.evaluator.best_of_k} reward: {metrics['best_of_k_reward']:.3f}")
        show("\n".join([*lines, f"written to {self.output_dir}"]))
        return metrics

"""Lightning's TensorBoard and MLflow loggers as trackers of the whole run: the fine-tuning curves on the run's
step axis and the iteration metrics (at the step each iteration ended), from the same place as W&B's.
Their packages are optional: without one, the tracker says what to install and goes on with metrics.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from raft.infra.atomic import atomic_write_text
from raft.trackers.run_config import run_config
from raft.trackers.wandb_run import flat


class LightningTracker:
    extra = ""  # the raft extra that installs the logger's package

    def __init__(self, logger: Any, run_dir: Path):
        self.logger, self.run_dir = logger, Path(run_dir)
        config = run_config(self.run_dir)
        if config:
            self.logger.log_hyperparams(flat_config(config))

    def log_steps(self, metrics: Mapping[str, float], step: int, iteration: int) -> None:
        self.logger.log_metrics(dict(metrics), step=step)

    def log_iteration(self, metrics: Mapping[str, float], step: int, rows: Sequence[Any]) -> None:
        self.logger.log_metrics({f"iteration/{k}": v for k, v in metrics.items()}, step=step)

    def log_end(self, step: int, figures: Sequence[Path], evaluation: Mapping[str, Any]) -> None:
        if evaluation:
            self.logger.log_metrics(flat(evaluation), step=step)

    def close(self) -> None:
        self.logger.finalize("success")


class TensorBoard(LightningTracker):
    """Event files in `<run>/tensorboard/` (`tensorboard --logdir outputs/multirun/<sweep>` shows a sweep)."""

    extra = "tensorboard"

    def __init__(self, run_dir: str | Path, folder: str = "tensorboard"):
        from pytorch_lightning.loggers import TensorBoardLogger

        super().__init__(
            TensorBoardLogger(save_dir=str(run_dir), name=folder, version="", default_hp_metric=False), run_dir
        )


class MLflow(LightningTracker):
    """One MLflow run per run folder (its id kept in `<run>/mlflow_run_id.txt`, so a resumed run continues it),
    in `experiment_name` (the sweep's name), stored in `<run>/mlflow.db` and `<run>/mlflow_artifacts/` (the
    figures) unless `tracking_uri` says where (`mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db`)."""

    extra = "mlflow"

    def __init__(self, run_dir: str | Path, experiment_name: str = "raft", tracking_uri: str | None = None):
        import mlflow  # noqa: F401  (Lightning's MLFlowLogger imports it only later)
        from pytorch_lightning.loggers import MLFlowLogger

        run_dir = Path(run_dir)
        id_file = run_dir / "mlflow_run_id.txt"
        logger = MLFlowLogger(
            experiment_name=experiment_name,
            run_name=run_dir.name,
            tracking_uri=tracking_uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}",  # MLflow 3: no file store
            artifact_location=None if tracking_uri else (run_dir / "mlflow_artifacts").resolve().as_uri(),
            run_id=id_file.read_text().strip() if id_file.exists() else None,
        )
        if not id_file.exists():
            atomic_write_text(id_file, logger.run_id)
        super().__init__(logger, run_dir)

    def log_end(self, step: int, figures: Sequence[Path], evaluation: Mapping[str, Any]) -> None:
        super().log_end(step, figures, evaluation)
        for path in figures:
            self.logger.experiment.log_artifact(self.logger.run_id, str(path))


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys of plain values (both loggers take flat hyperparameters)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out

"""What `raft.trackers.tracking.Tracker` feeds: W&B, Lightning's TensorBoard / MLflow loggers, and the per-stage
Lightning logger that brings each fine-tuning stage's curves to the tracker."""

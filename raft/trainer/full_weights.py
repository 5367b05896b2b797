"""The whole fine-tuned model after a fit whose strategy shards it, gathered on rank 0 so it saves as one folder.

Under DDP every rank holds every weight, and the model object saves itself. FSDP (and DeepSpeed ZeRO-3) leave
each rank a shard; their full state dict is a collective that every rank must enter, and rank 0 receives it.
"""

from __future__ import annotations


def full_state_dict(trainer, prefix: str = "model.") -> dict | None:
    """The fitted module's weights under `prefix` (the module's attribute holding the model), whole on rank 0
    and empty elsewhere; None where the strategy does not shard (save the model object as it is)."""
    from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy

    strategy = trainer.strategy  # subclasses too: a name check let a user's FSDP strategy save its shards
    if not isinstance(strategy, (FSDPStrategy, DeepSpeedStrategy)):
        return None
    if isinstance(strategy, DeepSpeedStrategy) and getattr(strategy, "zero_stage_3", False):
        import deepspeed

        module = strategy.model
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            state = module.module.state_dict() if strategy.is_global_zero else {}
    else:  # FSDP's full state-dict context gathers onto rank 0 (on the CPU); ZeRO-1/2 keep whole weights
        state = strategy.lightning_module_state_dict()
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

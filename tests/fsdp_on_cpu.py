"""Lightning's FSDP strategy on CPU processes (gloo), for the test of raft's checkpoint gathering without GPUs.

Lightning refuses the CPU for `strategy="fsdp"` and for an `FSDPStrategy` instance (its accelerator connector tests
the exact type), and wraps the model with `device_id=root_device.index`, which is None on the CPU, where torch's
FSDP then asks for an accelerator. torch's FSDP itself shards, trains and gathers on CPU given the CPU device; this
subclass gives it that and is otherwise Lightning's strategy. Users on GPUs write `trainer=fsdp`.
"""

import torch
from pytorch_lightning.strategies import FSDPStrategy


class FSDPOnCPU(FSDPStrategy):
    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"),
            **self.kwargs,
        )

"""The few collective operations training needs, over Horovod or torch.distributed.

One training loop (training.loop) runs unchanged under horovod.spark.run, horovodrun and
PySpark's TorchDistributor; only the communicator differs.
"""

from __future__ import annotations

import os

import torch


class LocalComm:
    """One process, no peers (num_proc: 1)."""

    rank, size, local_rank = 0, 1, 0

    def device(self, use_gpu: bool) -> torch.device:
        return torch.device("cuda:0" if use_gpu and torch.cuda.is_available() else "cpu")

    def broadcast_parameters(self, model) -> None:
        pass

    def distributed_optimizer(self, optimizer, model):
        return optimizer

    def allreduce_sum(self, value: float) -> float:
        return float(value)

    def allgather_object(self, obj) -> list:
        return [obj]

    def broadcast_object(self, obj):
        return obj

    def shutdown(self) -> None:
        pass


class HorovodComm(LocalComm):
    """Horovod: Gloo on CPU, NCCL on GPU builds; DistributedOptimizer averages gradients."""

    def __init__(self):
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()

    def device(self, use_gpu: bool) -> torch.device:
        if use_gpu and torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def broadcast_parameters(self, model) -> None:
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    def distributed_optimizer(self, optimizer, model):
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())

    def allreduce_sum(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor([value], dtype=torch.float64), op=self.hvd.Sum).item())

    def allgather_object(self, obj) -> list:
        return self.hvd.allgather_object(obj)

    def broadcast_object(self, obj):
        return self.hvd.broadcast_object(obj, root_rank=0)

    def shutdown(self) -> None:
        self.hvd.shutdown()


class _GradientAveraging:
    """An optimizer whose step first averages gradients across ranks (one flat all-reduce)."""

    def __init__(self, optimizer, params, size: int):
        self.optimizer, self.params, self.size = optimizer, [p for p in params if p.requires_grad], size

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n
        self.optimizer.step()


class TorchComm(LocalComm):
    """torch.distributed as set up by TorchDistributor (or torchrun): Gloo on CPU, NCCL on GPU."""

    def __init__(self, use_gpu: bool):
        import torch.distributed as dist

        self.dist = dist
        gpu = use_gpu and torch.cuda.is_available()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if gpu:
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self._on = torch.device("cuda", self.local_rank) if gpu else torch.device("cpu")

    device = HorovodComm.device

    def broadcast_parameters(self, model) -> None:
        for tensor in model.state_dict().values():
            self.dist.broadcast(tensor, src=0)

    def distributed_optimizer(self, optimizer, model):
        return _GradientAveraging(optimizer, model.parameters(), self.size)

    def allreduce_sum(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self._on)
        self.dist.all_reduce(t)
        return float(t.item())

    def allgather_object(self, obj) -> list:
        out = [None] * self.size
        self.dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def shutdown(self) -> None:
        self.dist.barrier()  # no rank tears the group down while a peer still talks to it
        self.dist.destroy_process_group()

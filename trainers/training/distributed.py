"""Process-group plumbing: one code path for a plain process, torchrun and Ray Train."""
from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_single_process_env() -> None:
    """Set RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* when no launcher did (DeepSpeed needs them,
    otherwise it tries MPI).  Leaves an existing torch.distributed setup alone."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        # a launcher (Ray Train, torchrun) or an earlier run in this process made the group;
        # DeepSpeed still reads the variables, so fill in any that went missing
        os.environ.setdefault("RANK", str(dist.get_rank()))
        os.environ.setdefault("WORLD_SIZE", str(dist.get_world_size()))
        if dist.get_world_size() == 1:
            os.environ.setdefault("LOCAL_RANK", "0")
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def broadcast_object(obj, src: int = 0):
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_module(module, src: int = 0):
    """Copy ``src``'s parameters and buffers into ``module`` on every rank (in place); returns it."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)
    return module


def all_reduce_mean(value):
    """Mean of a scalar tensor over all ranks (the tensor itself when not distributed)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    value = value.detach().float().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


class _NoCompiledOps(dict):
    """DeepSpeed's table of compatible ops, declared instead of probed: every op "incompatible"."""

    def __missing__(self, key):
        return False


def init_deepspeed_distributed(device_type: str) -> None:
    """``deepspeed.init_distributed`` with the device's backend (nccl on GPUs, gloo on CPUs).

    On CPUs DeepSpeed would otherwise probe-compile its ops to learn which are compatible and
    JIT-build its shared-memory all-reduce op (``deepspeed_shm_comm``: 30-90 s, and again whenever
    the compiler environment differs between commands).  Nothing here needs a compiled op on a
    CPU (gloo does the all-reduce, the optimizer is torch's AdamW), so the op table is declared
    up front with every op off: a process reaches its first step in seconds."""
    import deepspeed
    if device_type == "cpu":
        import deepspeed.ops as ops
        if "__compatible_ops__" not in vars(ops):
            ops.__compatible_ops__ = _NoCompiledOps()
    deepspeed.init_distributed(dist_backend="nccl" if device_type == "cuda" else "gloo")

"""Run a training body in two DDP processes on loopback, with a teardown that cannot hang.

Shared by the DDP tests. ``run(body, path)`` spawns ``world`` processes; each sets up
the process group (gloo on CPU, nccl with one GPU per process), calls
``body(rank, world, device, path)`` and tears down.

The teardown order matters: the DDP wrapper (and its reducer) must be freed while the
process group is still registered. Freed after ``destroy_process_group``, the reducer
holds the group's last reference and destroys it while holding the GIL; gloo's worker
thread, still releasing a finished work item that needs the GIL, then waits forever
(seen in about one run of four with torch 2.13). Here the body's frame (and with it the
DDP object) is gone before the barrier and the destroy. The parent also joins with a
time limit, so a hang becomes a failure with a message instead of a stalled suite.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: Seconds the parent waits for the workers before it kills them and fails.
JOIN_TIMEOUT = 180


def backend() -> str:
    """nccl with one GPU per process, gloo otherwise."""
    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= 2 else "gloo"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, body: Callable, path: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    name = backend()
    if name == "gloo" and os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # stay on loopback
    dist.init_process_group(name, rank=rank, world_size=world)
    try:
        device = torch.device(f"cuda:{rank}" if name == "nccl" else "cpu")
        body(rank, world, device, path)  # its DDP object dies with its frame, here
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(body: Callable, path: str, world: int = 2) -> None:
    """Run ``body(rank, world, device, path)`` in ``world`` processes; raise on failure or hang."""
    for attempt in range(3):  # the free port may be taken by another process before rank 0 binds
        ctx = mp.start_processes(_entry, args=(world, free_port(), body, path), nprocs=world,
                                 join=False, start_method="spawn")
        start = time.monotonic()
        try:
            while not ctx.join(timeout=1.0):
                if time.monotonic() - start > JOIN_TIMEOUT:
                    raise TimeoutError(f"DDP workers did not finish within {JOIN_TIMEOUT} s")
            return
        except mp.ProcessRaisedException as err:
            if "address already in use" not in str(err).lower() or attempt == 2:
                raise
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()

"""DDP with ANODE: two processes on loopback train exactly like one process on the full batch."""

from __future__ import annotations

import functools

import ddp_harness
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import odenet

BATCH, CHANNELS, SIZE, CLASSES, STEPS, LR = 8, 4, 6, 3, 2, 0.5


class ConvODE(torch.nn.Module):
    """Stem convolution, one ODE block f(y) = -Kᵀ relu(K y + b) (ANODE), pooling, linear head."""

    def __init__(self, gradient: str = "anode"):
        super().__init__()
        self.gradient = gradient
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(1, CHANNELS, 3, padding=1, dtype=torch.float64)
        k = 0.3 * torch.randn(CHANNELS, CHANNELS, 3, 3, dtype=torch.float64)
        self.k = torch.nn.Parameter(k)
        self.b = torch.nn.Parameter(torch.zeros(CHANNELS, dtype=torch.float64))
        self.head = torch.nn.Linear(CHANNELS, CLASSES, dtype=torch.float64)

    def rhs(self, t, y):
        z = torch.relu(F.conv2d(y, self.k, padding=1) + self.b[:, None, None])
        return -F.conv_transpose2d(z, self.k, padding=1)

    def forward(self, x):
        y = self.stem(x)
        t = torch.tensor([0.0, 1.0], dtype=y.dtype, device=y.device)
        y = odenet.odeint(self.rhs, y, t, method="rk4", step_size=0.25, gradient=self.gradient,
                          params=[self.k, self.b])[-1]
        return self.head(y.mean((2, 3)))


def _data(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 1, SIZE, SIZE, dtype=torch.float64, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return x.to(device), labels.to(device)


def _train(model, x, labels):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        opt.step()


def train_shard(make_model, rank: int, world: int, device: torch.device, path: str) -> None:
    """One rank's training on its share of the batch (``ddp_harness.run`` calls it with
    ``functools.partial(train_shard, Model)``); rank 0 saves the trained state to ``path``."""
    model = make_model().to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[rank] if device.type == "cuda" else None
    )
    x, labels = _data(device)
    part = BATCH // world
    _train(ddp, x[rank * part : (rank + 1) * part], labels[rank * part : (rank + 1) * part])
    if rank == 0:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_anode_matches_single_process(tmp_path):
    path = str(tmp_path / "ddp.pt")
    ddp_harness.run(functools.partial(train_shard, ConvODE), path)
    ddp_state = torch.load(path)

    model = ConvODE()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, *_data(torch.device("cpu")))
    backprop = ConvODE(gradient="backprop")
    _train(backprop, *_data(torch.device("cpu")))
    for name, value in model.state_dict().items():
        assert torch.allclose(backprop.state_dict()[name], value, rtol=1e-12, atol=1e-14), name
        assert not torch.equal(value, start[name]), name  # training moved every parameter
        assert torch.allclose(ddp_state[name], value, rtol=0, atol=1e-6), name
        assert float((ddp_state[name] - value).abs().max()) <= 1e-10

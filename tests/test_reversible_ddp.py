"""DDP with gradient='reversible': two processes on loopback train like one on the full batch."""

from __future__ import annotations

import functools

import ddp_harness
import pytest
import torch
import torch.distributed as dist
from test_ddp import _data, _train, train_shard

import odenet

CHANNELS, CLASSES = 4, 3


class RevODE(torch.nn.Module):
    """Stem conv, a reversible-Heun block f(y) = tanh(K y + b) with a lean K, pooling, head."""

    def __init__(self, gradient: str = "reversible"):
        super().__init__()
        self.gradient = gradient
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(1, CHANNELS, 3, padding=1, dtype=torch.float64)
        self.rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(CHANNELS, CHANNELS), "tanh").double()
        self.head = torch.nn.Linear(CHANNELS, CLASSES, dtype=torch.float64)

    def forward(self, x):
        y = self.stem(x)
        t = torch.tensor([0.0, 1.0], dtype=y.dtype, device=y.device)
        y = odenet.odeint(self.rhs, y, t, method="reversible_heun", step_size=0.125,
                          gradient=self.gradient)[-1]
        return self.head(y.mean((2, 3)))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_reversible_matches_single_process_and_backprop(tmp_path):
    path = str(tmp_path / "ddp.pt")
    ddp_harness.run(functools.partial(train_shard, RevODE), path)
    ddp_state = torch.load(path)
    model = RevODE()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, *_data(torch.device("cpu")))
    backprop = RevODE(gradient="backprop")
    _train(backprop, *_data(torch.device("cpu")))
    for name, value in model.state_dict().items():
        assert torch.allclose(backprop.state_dict()[name], value, rtol=1e-11, atol=1e-13), name
        assert not torch.equal(value, start[name]), name
        assert float((ddp_state[name] - value).abs().max()) <= 1e-10, name

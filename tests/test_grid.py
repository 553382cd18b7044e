"""The step grid: requested step counts in every dtype, no vanishing steps, bounded memory."""

from __future__ import annotations

import math
import time

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError
from odenet.solvers import Grid, time_resolution

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def count_steps(t: torch.Tensor, h: float, method: str = "euler") -> int:
    calls = [0]

    def f(t, y):
        calls[0] += 1
        return -y

    odenet.odeint(f, torch.ones(1, dtype=torch.float64), t, method=method, step_size=h)
    return calls[0] // odenet.METHODS[method].stages


@pytest.mark.parametrize(
    "t,h,steps",
    [
        (torch.linspace(0, 1, 11), 0.1, 10),  # was 16 steps (64 evaluations of rk4)
        (torch.linspace(0, 1, 101), 0.01, 100),  # was 127
        (torch.tensor([0.0, 0.1]), 0.1 / 8, 8),  # ODEBlock(T=0.1, steps=8): was 9
        (torch.tensor([0.0, 0.3]), 0.1, 3),
        (torch.tensor([0.0, 2.2]), 0.2, 11),
        (torch.linspace(0, 1, 11, dtype=torch.float64), 0.1, 10),
        (torch.linspace(0, 1, 101, dtype=torch.bfloat16), 0.01, 100),
    ],
)
def test_float32_grids_take_the_requested_steps(t, h, steps):
    assert count_steps(t, h) == steps


@pytest.mark.parametrize("T,steps", [(0.1, 8), (0.3, 3), (2.2, 11), (1.0, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_takes_its_steps_in_every_dtype(T, steps, dtype):
    calls = [0]

    class Rhs(torch.nn.Module):
        def forward(self, t, y):
            calls[0] += 1
            return -y

    block = odenet.nn.ODEBlock(Rhs(), T=T, steps=steps, method="euler", gradient="backprop")
    block(torch.ones(3, dtype=dtype))
    assert calls[0] == steps


@given(
    a=st.floats(-50, 50),
    m=st.integers(1, 60),
    h=st.floats(1e-3, 5.0),
    dtype=st.sampled_from(DTYPES),
    reverse=st.booleans(),
)
def test_whole_number_of_steps_is_taken_exactly(a, m, h, dtype, reverse):
    """An interval of m steps up to the dtype's round-off takes exactly m steps."""
    b = a + m * h
    ta, tb = torch.tensor([a, b], dtype=dtype).tolist()
    eps = time_resolution(dtype)
    assume(ta != tb and eps * max(abs(ta), abs(tb)) < h / 50)
    times = [tb, ta] if reverse else [ta, tb]
    g = Grid(times, h, eps=eps)
    assert g.num_steps == m
    assert g[0] == times[0] and g[len(g) - 1] == times[1]


@given(
    times=st.lists(st.floats(-20, 20), min_size=2, max_size=5, unique=True),
    h=st.floats(1e-2, 3.0),
    dtype=st.sampled_from(DTYPES),
)
def test_no_step_below_the_dtype_resolution(times, h, dtype):
    ts = sorted(set(torch.tensor(times, dtype=dtype).tolist()))
    assume(len(ts) >= 2)
    eps = time_resolution(dtype)
    g = Grid(ts, h, eps=eps)
    assert [g[i] for i in g.out_index] == ts
    for n in range(g.num_steps):
        k, _, last = g.interval(n)
        size = abs(g.size(n))
        tol = 4 * eps * max(abs(ts[k]), abs(ts[k + 1])) + 1e-12
        if not last:
            assert size == h
        elif g.out_index[k + 1] - g.out_index[k] > 1:  # a shortened (or stretched) last step
            assert min(tol, h / 2, h - tol) <= size <= h + tol


def test_grid_memory_does_not_grow_with_the_steps():
    start = time.perf_counter()
    g = Grid([0.0, 1.0], 1e-9)
    assert g.num_steps == 10**9 and g[10**9] == 1.0 and g[5 * 10**8] == pytest.approx(0.5)
    assert time.perf_counter() - start < 1.0  # nothing is materialised
    p = odenet.solvers.Problem(lambda t, y: -y, odenet.METHODS["euler"],
                               torch.tensor([0.0, 1.0]), 1e-8)
    assert p.num_steps == 10**8 and len(p.stage_times(p.num_steps - 1)) == 1


def test_absurd_step_count_is_refused_early():
    with pytest.raises(ArgumentError, match="max_num_steps"):
        odenet.odeint(lambda t, y: -y, torch.ones(3), torch.tensor([0.0, 1.0]), step_size=1e-300)
    with pytest.raises(ArgumentError, match="max_num_steps=100"):
        odenet.odeint(lambda t, y: -y, torch.ones(3), torch.tensor([0.0, 1.0]), step_size=1e-3,
                      options={"max_num_steps": 100})


def test_explicit_grid_inserts_and_snaps_output_times():
    g = Grid([0.0, 0.5, 1.0], None, points=[0.0, 0.3, 0.5 + 1e-17, 0.75, 1.0])
    assert list(g) == [0.0, 0.3, 0.5, 0.75, 1.0] and g.out_index == [0, 2, 4]
    g = Grid([0.0, 0.4, 1.0], None, points=[0.0, 0.5, 1.0])
    assert list(g) == [0.0, 0.4, 0.5, 1.0] and g.out_index == [0, 1, 3]
    assert math.isclose(g.size(1), 0.1)

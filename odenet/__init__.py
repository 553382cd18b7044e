"""odenet: numerical analysis of ODE-networks in PyTorch.

Fixed-step explicit and IMEX Runge–Kutta solvers with exact
discretize-then-optimize gradients (backprop, ANODE checkpointing, binomial
checkpointing) and the optimize-then-discretize continuous adjoint, implicit
FFT/DCT operators, and lean / sparse / deformable convolution right-hand sides.

Examples
--------
>>> import torch, odenet
>>> y = odenet.odeint(lambda t, y: -y, torch.ones(3), torch.tensor([0.0, 1.0]),
...                   method="rk4", step_size=0.25)
>>> y.shape
torch.Size([2, 3])
"""

from odenet import compat, errors, gradients, linear, models, nn, solvers
from odenet._integrate import odeint
from odenet.gradients import ANODE, Adjoint, Backprop, GradientStrategy, Reversible, Revolve
from odenet.solvers import METHODS, ButcherTableau, IMEXTableau

__version__ = "0.1.0"


def __getattr__(name: str):
    # odenet.analysis (the diagnostics) is imported on first use: it needs the "analysis" extra
    # and matplotlib, which the solvers do not
    if name == "analysis":
        import importlib

        return importlib.import_module("odenet.analysis")
    raise AttributeError(f"module 'odenet' has no attribute {name!r}")


__all__ = [
    "ANODE",
    "METHODS",
    "Adjoint",
    "Backprop",
    "ButcherTableau",
    "GradientStrategy",
    "IMEXTableau",
    "Reversible",
    "Revolve",
    "compat",
    "errors",
    "gradients",
    "linear",
    "models",
    "nn",
    "odeint",
    "solvers",
]

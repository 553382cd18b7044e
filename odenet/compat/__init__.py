"""Drop-in compatibility layers for other libraries' APIs.

``from odenet.compat import torchdiffeq as tde`` gives ``tde.odeint``,
``tde.odeint_adjoint`` and ``tde.odeint_event`` with torchdiffeq's names,
signatures and defaults, running on odenet's solvers.

Examples
--------
>>> import torch
>>> from odenet.compat import torchdiffeq as tde
>>> tde.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="rk4").shape
torch.Size([2, 2])
"""

from odenet.compat import torchdiffeq

__all__ = ["torchdiffeq"]

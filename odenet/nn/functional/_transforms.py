"""Whether :func:`torch.func.vmap` is running, for the operators' choice of engine.

The compiled kernels and the chunked and taps engines are autograd Functions without a
batching rule; under ``vmap`` (which :func:`torch.func.jacrev`, :func:`~torch.func.jacfwd`
and :func:`~torch.func.hessian` use) the operators compute with the vendor's convolutions
(or, for deformable convolutions, the differentiable composite), which have one.
"""

from __future__ import annotations

import torch

_VMAP = torch._C._functorch.TransformType.Vmap


def under_vmap() -> bool:
    """True while a :func:`torch.func.vmap` transform is active (at any level).

    Examples
    --------
    >>> import torch
    >>> from odenet.nn.functional._transforms import under_vmap
    >>> under_vmap()
    False
    >>> torch.func.vmap(lambda x: torch.tensor(under_vmap()))(torch.zeros(2)).tolist()
    [True, True]
    """
    stack = torch._C._functorch.get_interpreter_stack()
    return bool(stack) and any(level.key() == _VMAP for level in stack)

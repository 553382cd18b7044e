"""Which :mod:`torch.func` transforms are under way: one place for the questions odenet asks
of functorch's interpreter stack.

The strategies differentiate the steps themselves under a differentiating transform; the
convolution operators' compiled kernels and chunked and taps engines are autograd Functions
without a batching rule, so under ``vmap`` (which :func:`torch.func.jacrev`,
:func:`~torch.func.jacfwd` and :func:`~torch.func.hessian` use) the operators compute with the
vendor's convolutions (deformable convolutions: their differentiable composite).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

__all__ = [
    "batched",
    "forward_mode_active",
    "func_transform_active",
    "grad_levels",
    "jvp_active",
    "under_vmap",
]

_C = torch._C._functorch


def _count(kind: TransformType) -> int:
    if torch.compiler.is_compiling():  # dynamo cannot trace the stack (and handles transforms)
        return 0
    return sum(level.key() == kind for level in retrieve_all_functorch_interpreters())


def func_transform_active() -> bool:
    """Whether a :mod:`torch.func` transform (``vmap``, ``grad``, ``jacrev``, ...) is under way.

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import func_transform_active
    >>> func_transform_active(), bool(torch.func.vmap(
    ...     lambda x: torch.tensor(func_transform_active()))(torch.ones(2)).all())
    (False, True)
    """
    if torch.compiler.is_compiling():
        return False
    return bool(retrieve_all_functorch_interpreters())


def grad_levels() -> int:
    """The number of reverse-mode transforms (``grad``, ``vjp``, ``jacrev``) under way.

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import grad_levels
    >>> grad_levels(), int(torch.func.grad(lambda x: x * grad_levels())(torch.ones(())))
    (0, 1)
    """
    return _count(TransformType.Grad)


def jvp_active() -> bool:
    """Whether a forward-mode transform (``jvp``, ``jacfwd``) is under way.

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import jvp_active
    >>> jvp_active(), bool(torch.func.jvp(lambda x: torch.tensor(jvp_active()),
    ...                                   (torch.ones(1),), (torch.ones(1),))[0])
    (False, True)
    """
    return _count(TransformType.Jvp) > 0


def forward_mode_active(tensors: Sequence[torch.Tensor] = ()) -> bool:
    """Whether forward-mode differentiation is under way: a :func:`torch.func.jvp`,
    :func:`~torch.func.jacfwd` or :func:`~torch.func.hessian` transform, or a dual level of
    :mod:`torch.autograd.forward_ad` in which one of ``tensors`` carries a tangent.
    (Inside :func:`torch.compile` the transforms are dynamo's to handle: every query here
    answers no.)

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import forward_mode_active
    >>> forward_mode_active()
    False
    >>> torch.func.jvp(lambda x: torch.tensor(forward_mode_active()), (torch.ones(1),),
    ...                (torch.ones(1),))[0]
    tensor(True)
    """
    if jvp_active():
        return True
    if torch.autograd.forward_ad._current_level < 0:
        return False
    unpack = torch.autograd.forward_ad.unpack_dual
    return any(isinstance(x, torch.Tensor) and unpack(x).tangent is not None for x in tensors)


def under_vmap() -> bool:
    """Whether a ``vmap`` is under way (at any level).

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import under_vmap
    >>> under_vmap()
    False
    >>> torch.func.vmap(lambda x: torch.tensor(under_vmap()))(torch.zeros(2)).tolist()
    [True, True]
    """
    return _count(TransformType.Vmap) > 0


def batched(t: torch.Tensor) -> bool:
    """Whether ``t`` carries a ``vmap`` batch dimension (at any level of functorch wrappers):
    its values then differ per sample, and no single number on the host stands for them.

    Examples
    --------
    >>> import torch
    >>> from odenet._functorch import batched
    >>> batched(torch.ones(2)), bool(torch.func.vmap(lambda x: torch.tensor(batched(x)))(
    ...     torch.ones(2)).all())
    (False, True)
    """
    if torch.compiler.is_compiling():
        return False
    while _C.is_functorch_wrapped_tensor(t):
        if _C.is_batchedtensor(t):
            return True
        t = _C.get_unwrapped(t)
    return False

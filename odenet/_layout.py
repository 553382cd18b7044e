"""Memory layout: an operator or block given a channels-last image returns one."""

from __future__ import annotations

import torch
from torch import Tensor

from odenet._functorch import batched

__all__ = ["channels_last", "like_layout"]


def channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D image laid out channels-last (and not also plain contiguous);
    never under :func:`torch.func.vmap`, which has no memory formats.

    Examples
    --------
    >>> import torch
    >>> from odenet._layout import channels_last
    >>> x = torch.randn(2, 3, 4, 4)
    >>> channels_last(x), channels_last(x.contiguous(memory_format=torch.channels_last))
    (False, True)
    """
    return (
        x.ndim == 4
        and not batched(x)
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def like_layout(out: Tensor, x: Tensor) -> Tensor:
    """``out`` in ``x``'s memory format (channels-last in, channels-last out).

    Examples
    --------
    >>> import torch
    >>> from odenet._layout import like_layout
    >>> x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    >>> like_layout(torch.zeros(2, 3, 4, 4), x).is_contiguous(memory_format=torch.channels_last)
    True
    """
    return out.contiguous(memory_format=torch.channels_last) if channels_last(x) else out

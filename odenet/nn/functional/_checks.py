"""Argument checks shared by the convolution operators."""

from __future__ import annotations

from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_image", "check_like", "check_param", "pair"]


def check_image(name: str, x: object, *, channels: int | None = None) -> Tensor:
    """Check that ``x`` is a floating point 4-D tensor ``(B, C, H, W)``."""
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ArgumentError(
            f"{name}: expected a 4-D tensor (batch, channels, height, width), "
            f"got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{name}: expected a floating point tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ArgumentError(
            f"{name}: expected {channels} channels (dimension 1), got shape {tuple(x.shape)}"
        )
    return x


def check_param(name: str, p: object, shape: tuple[int, ...] | None, like: Tensor) -> Tensor:
    """Check that ``p`` is a tensor of ``shape`` with ``like``'s dtype and device."""
    if not isinstance(p, Tensor):
        raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(p).__name__}")
    if shape is not None and tuple(p.shape) != tuple(shape):
        raise ArgumentError(f"{name}: expected shape {tuple(shape)}, got {tuple(p.shape)}")
    check_like(name, p, like)
    return p


def check_like(name: str, p: Tensor, like: Tensor, like_name: str = "input") -> None:
    """Check that ``p`` has the dtype and device of ``like``."""
    if p.dtype != like.dtype:
        raise ArgumentTypeError(
            f"{name}: dtype {p.dtype} does not match {like_name}'s dtype {like.dtype} "
            f"(bring both to one dtype, e.g. module.to({like.dtype}) or "
            f"{like_name}.to({p.dtype}))"
        )
    if p.device != like.device:
        raise ArgumentError(f"{name}: on device {p.device}, but {like_name} is on {like.device}")


def pair(name: str, v: object, *, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into a pair, checking ``>= minimum``."""
    if isinstance(v, bool):
        raise ArgumentTypeError(f"{name}: expected an int or a pair of ints, got bool")
    if isinstance(v, int):
        out = (v, v)
    elif (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(u, int) and not isinstance(u, bool) for u in v)
    ):
        out = (int(v[0]), int(v[1]))
    else:
        raise ArgumentTypeError(f"{name}: expected an int or a pair of ints, got {v!r}")
    if min(out) < minimum:
        raise ArgumentError(f"{name}: expected values >= {minimum}, got {v!r}")
    return out

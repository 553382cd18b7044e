"""Constructor argument checks for the modules of :mod:`odenet.nn`."""

from __future__ import annotations

from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_bool", "check_positive_int"]


def check_positive_int(name: str, v: object, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgumentTypeError(f"{name}: expected an int, got {type(v).__name__}")
    if v < minimum:
        raise ArgumentError(f"{name}: expected an int >= {minimum}, got {v}")
    return v


def check_bool(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise ArgumentTypeError(f"{name}: expected True or False, got {type(v).__name__}")
    return v

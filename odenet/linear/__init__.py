"""Implicit linear operators ``L`` for IMEX methods (``y' = f(t, y) - L y``)."""

__all__: list[str] = []

"""Diagnostics for ODE-networks built on :mod:`odenet`."""

__all__: list[str] = []

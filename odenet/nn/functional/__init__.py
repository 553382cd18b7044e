"""Functional forms of the operators of :mod:`odenet.nn`."""

__all__: list[str] = []

"""Ready-made ODE-networks for examples and analysis."""

__all__: list[str] = []

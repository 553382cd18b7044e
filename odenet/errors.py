"""Typed exceptions raised by :mod:`odenet`.

Every error names the offending argument and what was expected. Each class
subclasses the built-in exception a caller would naturally catch
(:class:`ValueError` or :class:`TypeError`), so ``except ValueError`` keeps
working, while ``except odenet.errors.OdenetError`` catches every error the
package raises on purpose.

Examples
--------
>>> import torch, odenet
>>> from odenet.errors import UnknownMethodError
>>> try:
...     odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]),
...                   method="rk5", step_size=0.1)
... except UnknownMethodError as err:
...     print(str(err).split(";")[0])
method: unknown method 'rk5'
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "EventError",
    "FunctionOutputError",
    "GradientError",
    "NonFiniteStateError",
    "OdenetError",
    "ShapeError",
    "StepSizeError",
    "TableauError",
    "UnknownMethodError",
    "UnknownOptionError",
]


class OdenetError(Exception):
    """Base class of every error raised on purpose by :mod:`odenet`.

    Examples
    --------
    >>> from odenet.errors import OdenetError, ArgumentError
    >>> issubclass(ArgumentError, OdenetError)
    True
    """


class ArgumentError(OdenetError, ValueError):
    """An argument has an invalid value (wrong range, shape, device, ...).

    Examples
    --------
    >>> from odenet.errors import ArgumentError
    >>> isinstance(ArgumentError("step_size: expected > 0, got -1"), ValueError)
    True
    """


class ArgumentTypeError(OdenetError, TypeError):
    """An argument has an invalid type (e.g. an integer ``y0``).

    Examples
    --------
    >>> from odenet.errors import ArgumentTypeError
    >>> isinstance(ArgumentTypeError("y0: expected a floating point tensor"), TypeError)
    True
    """


class UnknownMethodError(ArgumentError):
    """``method`` names no known scheme; the message lists the valid ones.

    Examples
    --------
    >>> from odenet.errors import UnknownMethodError
    >>> issubclass(UnknownMethodError, ValueError)
    True
    """


class UnknownOptionError(ArgumentError):
    """``options`` holds a key the solver does not understand.

    Examples
    --------
    >>> from odenet.errors import UnknownOptionError
    >>> issubclass(UnknownOptionError, ValueError)
    True
    """


class ShapeError(ArgumentError, RuntimeError):
    """Tensors handed to an operator have shapes that do not fit together.

    The message gives the expected shape. It is an :class:`ArgumentError` (so a
    :class:`ValueError`) and a :class:`RuntimeError`, the class PyTorch and
    torchvision raise for the same mistake, so code written against either keeps
    catching it.

    Examples
    --------
    >>> import torch
    >>> from odenet.errors import ShapeError
    >>> from odenet.nn.functional import deform_conv2d
    >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    >>> try:
    ...     deform_conv2d(x, torch.zeros(1, 4, 5, 5), w, padding=1)
    ... except RuntimeError as err:
    ...     print(isinstance(err, ShapeError), "(1, 18, 5, 5)" in str(err))
    True True
    """


class TableauError(ArgumentError):
    """A Butcher or IMEX tableau is inconsistent (row sums, weights, shape).

    Examples
    --------
    >>> from odenet import ButcherTableau
    >>> from odenet.errors import TableauError
    >>> try:
    ...     ButcherTableau(a=[[0.0]], b=[0.5], c=[0.0], order=1)
    ... except TableauError as err:
    ...     print("sum" in str(err))
    True
    """


class FunctionOutputError(OdenetError, ValueError):
    """``func`` returned something of the wrong shape, dtype, device or type.

    Examples
    --------
    >>> from odenet.errors import FunctionOutputError
    >>> issubclass(FunctionOutputError, ValueError)
    True
    """


class NonFiniteStateError(OdenetError, FloatingPointError):
    """The solution became NaN or infinite.

    Attributes
    ----------
    step : int or None
        Index of the first step (counted from 0 over the whole solve) whose
        result is non-finite, when it could be located.
    time : float or None
        The time reached by that step.

    Examples
    --------
    >>> from odenet.errors import NonFiniteStateError
    >>> err = NonFiniteStateError("state became non-finite", step=3, time=0.4)
    >>> err.step, err.time
    (3, 0.4)
    """

    def __init__(self, message: str, *, step: int | None = None, time: float | None = None):
        super().__init__(message)
        self.step = step
        self.time = time


class StepSizeError(OdenetError, RuntimeError):
    """An adaptive solve could not continue: the step size fell below the time resolution,
    or the step budget ``max_num_steps`` ran out.

    Attributes
    ----------
    time : float
        The time the solve had reached.

    Examples
    --------
    >>> from odenet.errors import StepSizeError
    >>> StepSizeError("stalled", time=0.5).time
    0.5
    """

    def __init__(self, message: str, *, time: float):
        super().__init__(message)
        self.time = time


class EventError(OdenetError, RuntimeError):
    """An event search (``event_fn``) found no event within ``max_num_steps`` steps.

    Examples
    --------
    >>> from odenet.errors import EventError
    >>> issubclass(EventError, RuntimeError)
    True
    """


class GradientError(OdenetError, RuntimeError):
    """A gradient strategy cannot deliver the requested gradient.

    Raised, for example, when a tensor that requires grad reaches ``func`` only
    through a closure (its gradient would silently be zero) or when a strategy
    is asked for a double backward it cannot provide.

    Examples
    --------
    >>> from odenet.errors import GradientError
    >>> issubclass(GradientError, RuntimeError)
    True
    """

"""Bad input to the operators, right-hand sides and layers of :mod:`odenet.nn`: every case is
refused with odenet's typed error naming the argument, and a channel mismatch blames the input.

One table, one test: each row is ``(id, call, expected exception, regex on the message)``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from odenet.errors import ArgumentError, ArgumentTypeError, OdenetError, ShapeError
from odenet.linear import ConvFFT
from odenet.nn import (
    DeformConv2d,
    DenseConv2d,
    IMEXBlock,
    LeanConv2d,
    ODEBlock,
    ParabolicRHS,
    ResidualRHS,
    SparseConv2d,
    make_activation,
    make_norm,
)
from odenet.nn.functional import (
    deform_conv2d,
    deform_conv2d_adjoint,
    lean_conv2d,
    psc_mask,
    sparse_conv2d,
    stencil_kernel,
)


def img(c=2, h=4, w=4, b=1, dtype=torch.float32):
    return torch.ones(b, c, h, w, dtype=dtype)


def off(b=1, c=18, h=4, w=4):
    return torch.zeros(b, c, h, w)


def w3(cout=3, cin=2):
    return torch.ones(cout, cin, 3, 3)


def rhs2(**kw):
    return ResidualRHS(LeanConv2d(2, 2), **kw)


CASES = [
    # LeanConv2d and lean_conv2d
    ("lean-in-str", lambda: LeanConv2d("4", 4), ArgumentTypeError, r"^in_channels: expected an"),
    ("lean-in-zero", lambda: LeanConv2d(0, 0), ArgumentError, r"^in_channels: .* >= 1"),
    ("lean-widths", lambda: LeanConv2d(4, 8), ArgumentError, r"^out_channels: .*in_channels == "),
    ("lean-stencil", lambda: LeanConv2d(4, 4, stencil=7), ArgumentError, r"^stencil: expected one"),
    ("lean-bias-int", lambda: LeanConv2d(4, 4, bias=1), ArgumentTypeError, r"^bias: expected True"),
    ("lean-input-3d", lambda: LeanConv2d(4, 4)(torch.ones(4, 6, 6)), ArgumentError,
     r"^input: expected a 4-D tensor"),
    ("lean-input-int", lambda: LeanConv2d(2, 2)(img(dtype=torch.long)), ArgumentTypeError,
     r"^input: expected a floating point tensor"),
    ("lean-input-double", lambda: LeanConv2d(2, 2)(img(dtype=torch.float64)), ArgumentTypeError,
     r"^weight: dtype torch.float32 does not match input's dtype torch.float64 \(bring both"),
    ("lean-input-list", lambda: LeanConv2d(2, 2)([1.0]), ArgumentTypeError,
     r"^input: expected a Tensor, got list"),
    ("lean-input-channels", lambda: LeanConv2d(4, 4)(torch.randn(1, 3, 6, 6)), ArgumentError,
     r"^input: expected 4 channels \(dimension 1\) for a weight of shape \(4, 4\)"),
    ("lean-adjoint-channels", lambda: LeanConv2d(4, 4).adjoint(img(3)), ArgumentError,
     r"^input: expected 4 channels"),
    ("lean_conv2d-weight-3d", lambda: lean_conv2d(img(3), torch.ones(3, 3, 1), torch.ones(3, 5)),
     ArgumentError, r"^weight: expected shape \(3, 3\), got \(3, 3, 1\)"),
    ("lean_conv2d-stencil", lambda: lean_conv2d(img(3), torch.ones(3, 3), torch.ones(3, 6)),
     ArgumentError, r"^stencil_weight: expected shape \(3, s\)"),
    ("stencil_kernel-1d", lambda: stencil_kernel(torch.ones(5)), ArgumentError,
     r"^stencil_weight: expected a 2-D tensor"),
    # SparseConv2d and sparse_conv2d
    ("sparse-in-negative", lambda: SparseConv2d(-1, 4), ArgumentError, r"^in_channels: expected"),
    ("sparse-pattern", lambda: SparseConv2d(4, 4, pattern="psc5"), ArgumentError,
     r"^pattern: unknown pattern 'psc5'"),
    ("sparse-engine", lambda: SparseConv2d(4, 4, engine="gpu"), ArgumentError,
     r"^engine: expected one of"),
    ("sparse-input-channels", lambda: SparseConv2d(4, 8)(img(3)), ArgumentError,
     r"^input: expected 4 channels"),
    ("sparse-adjoint-channels", lambda: SparseConv2d(4, 8).adjoint(img(4)), ArgumentError,
     r"^input: expected 8 channels"),
    ("sparse_conv2d-mask-float",
     lambda: sparse_conv2d(img(), torch.ones(3), torch.ones(2, 2, 3, 3)),
     ArgumentTypeError, r"^mask: expected a boolean tensor"),
    ("sparse_conv2d-weight-count",
     lambda: sparse_conv2d(img(), torch.ones(3), torch.ones(2, 2, 3, 3, dtype=torch.bool)),
     ArgumentError, r"^weight: expected 36 values"),
    ("psc_mask-pattern", lambda: psc_mask(4, 4, pattern="x"), ArgumentError,
     r"^pattern: unknown pattern 'x'"),
    # DenseConv2d
    ("dense-kernel-even", lambda: DenseConv2d(4, 4, kernel_size=2), ArgumentError,
     r"^kernel_size: expected an odd size"),
    ("dense-input-channels", lambda: DenseConv2d(4, 4)(img(3)), ArgumentError,
     r"^x: expected 4 channels"),
    # DeformConv2d and deform_conv2d
    ("deform-in-zero", lambda: DeformConv2d(0, 4), ArgumentError, r"^in_channels: expected"),
    ("deform-kernel-float", lambda: DeformConv2d(4, 4, kernel_size=2.5), ArgumentTypeError,
     r"^kernel_size: expected an int"),
    ("deform-offset-groups", lambda: DeformConv2d(4, 4, offset_groups=3), ArgumentError,
     r"^offset_groups: must divide in_channels"),
    ("deform-padding", lambda: DeformConv2d(4, 4, padding=-1), ArgumentError,
     r"^padding: expected an int >= 0"),
    ("deform-input-channels", lambda: DeformConv2d(4, 4)(img(3)), ArgumentError,
     r"^x: expected 4 channels"),
    ("deform-adjoint-channels", lambda: DeformConv2d(4, 4).adjoint(img(3), y=img(4)),
     ArgumentError, r"^z: expected 4 channels"),
    ("deform_conv2d-offset-channels", lambda: deform_conv2d(img(), off(c=4), w3(), padding=1),
     ShapeError, r"^offset: the shape of the offset, \(1, 4, 4, 4\), does not fit"),
    ("deform_conv2d-offset-batch", lambda: deform_conv2d(img(b=2), off(), w3(), padding=1),
     ShapeError, r"^offset: the shape of the offset.*expected \(2, "),
    ("deform_conv2d-offset-size", lambda: deform_conv2d(img(), off(), w3()), ShapeError,
     r"^offset: .*e\.g\. \(1, 18, 2, 2\)"),
    ("deform_conv2d-mask-channels",
     lambda: deform_conv2d(img(), off(), w3(), padding=1, mask=off(c=2)), ShapeError,
     r"^mask: mask\.shape\[1\] is not valid: expected shape \(1, 9, 4, 4\)"),
    ("deform_conv2d-mask-3d",
     lambda: deform_conv2d(img(), off(), w3(), padding=1, mask=torch.ones(9, 4, 4)),
     ArgumentError, r"^mask: expected a 4-D tensor"),
    ("deform_conv2d-weight-3d", lambda: deform_conv2d(img(), off(), torch.ones(3, 2, 3)),
     ArgumentError, r"^weight: expected a 4-D tensor"),
    ("deform_conv2d-weight-groups", lambda: deform_conv2d(img(4), off(), w3(3, 3), padding=1),
     ShapeError, r"^weight: dimension 1 \(3\) must divide the input channels \(4\)"),
    ("deform_conv2d-out-groups", lambda: deform_conv2d(img(4), off(), w3(3, 2), padding=1),
     ShapeError, r"^weight: out_channels \(3\) must be divisible by the weight groups \(2"),
    ("deform_conv2d-too-small", lambda: deform_conv2d(img(h=2, w=2), off(h=0, w=0), w3()),
     ShapeError, r"^input: spatial size 2x2 is too small for kernel 3x3"),
    ("deform_conv2d-stride", lambda: deform_conv2d(img(), off(), w3(), stride=0), ArgumentError,
     r"^stride: expected values >= 1"),
    ("deform_conv2d-padding-str", lambda: deform_conv2d(img(), off(), w3(), padding="same"),
     ArgumentTypeError, r"^padding: expected an int or a pair of ints"),
    ("deform_conv2d-dilation-triple", lambda: deform_conv2d(img(), off(), w3(), dilation=(1, 1, 1)),
     ArgumentTypeError, r"^dilation: expected an int or a pair of ints"),
    ("deform_conv2d-bias", lambda: deform_conv2d(img(), off(), w3(), torch.ones(2), padding=1),
     ArgumentError, r"^bias: expected shape \(3,\), got \(2,\)"),
    ("deform_conv2d-offset-dtype",
     lambda: deform_conv2d(img(), off().double(), w3(), padding=1), ArgumentTypeError,
     r"^offset: dtype torch.float64 does not match input's dtype torch.float32"),
    ("deform_conv2d-offset-device",
     lambda: deform_conv2d(img(), off().to("meta"), w3(), padding=1), ArgumentError,
     r"^offset: on device meta, but input is on cpu"),
    ("deform_conv2d_adjoint-input-size",
     lambda: deform_conv2d_adjoint(img(3), off(), w3(), (0, 4), padding=1), ArgumentError,
     r"^input_size: expected values >= 1"),
    ("deform_conv2d_adjoint-groups",
     lambda: deform_conv2d_adjoint(img(3), off(), w3(), (4, 4), padding=1, groups=0),
     ArgumentError, r"^groups: expected a positive int"),
    ("deform_conv2d_adjoint-input-shape",
     lambda: deform_conv2d_adjoint(img(2), off(), w3(), (4, 4), padding=1), ArgumentError,
     r"^input: expected shape \(1, 3, 4, 4\)"),
    # right-hand sides, norms and activations
    ("rhs-op-function", lambda: ResidualRHS(lambda y: y), ArgumentTypeError,
     r"^op: expected an nn.Module operator"),
    ("rhs-norm-name", lambda: rhs2(norm="layer"), ArgumentError, r"^norm: unknown name 'layer'"),
    ("rhs-norm-int", lambda: rhs2(norm=3), ArgumentTypeError, r"^norm: expected None, a name"),
    ("rhs-activation-name", lambda: rhs2(activation="swish"), ArgumentError,
     r"^activation: unknown name 'swish'"),
    ("rhs-activation-int", lambda: rhs2(activation=3), ArgumentTypeError,
     r"^activation: expected a name, a callable"),
    ("rhs-bias-int", lambda: rhs2(bias=1), ArgumentTypeError, r"^bias: expected True or False"),
    ("rhs-input-channels", lambda: rhs2()(0.0, img(3)), ArgumentError,
     r"^input: expected 2 channels"),
    ("parabolic-no-adjoint", lambda: ParabolicRHS(nn.Conv2d(4, 4, 3, padding=1)),
     ArgumentTypeError, r"^op: the parabolic form needs Kᵀ"),
    ("make_norm-name", lambda: make_norm("foo", 4), ArgumentError, r"^norm: unknown name 'foo'"),
    ("make_norm-channels", lambda: make_norm("batch", 0), ArgumentError,
     r"^channels: expected an int >= 1"),
    ("make_activation-name", lambda: make_activation("foo"), ArgumentError,
     r"^activation: unknown name 'foo'"),
    # ODEBlock
    ("block-T-negative", lambda: ODEBlock(rhs2(), T=-1), ArgumentError,
     r"^T: expected a finite positive number"),
    ("block-T-nan", lambda: ODEBlock(rhs2(), T=float("nan")), ArgumentError,
     r"^T: expected a finite positive number, got nan"),
    ("block-T-str", lambda: ODEBlock(rhs2(), T="1"), ArgumentTypeError,
     r"^T: expected a real number"),
    ("block-steps-zero", lambda: ODEBlock(rhs2(), steps=0), ArgumentError,
     r"^steps: expected an int >= 1"),
    ("block-steps-float", lambda: ODEBlock(rhs2(), steps=2.5), ArgumentTypeError,
     r"^steps: expected an int"),
    ("block-method", lambda: ODEBlock(rhs2(), method="rk5"), ArgumentError,
     r"^method: unknown method 'rk5'"),
    ("block-gradient", lambda: ODEBlock(rhs2(), gradient="magic"), ArgumentError,
     r"^gradient: unknown strategy 'magic'"),
    ("block-rhs-one-argument", lambda: ODEBlock(LeanConv2d(4, 4)), ArgumentTypeError,
     r"^rhs: expected a callable rhs\(t, y\)"),
    ("block-rhs-int", lambda: ODEBlock(3), ArgumentTypeError, r"^rhs: expected a callable"),
    ("block-input-int", lambda: ODEBlock(rhs2())(img(dtype=torch.long)), ArgumentTypeError,
     r"^y: expected a floating point tensor"),
    ("block-input-channels", lambda: ODEBlock(rhs2())(img(3)), ArgumentError,
     r"^input: expected 2 channels"),
    ("block-imex-without-implicit", lambda: ODEBlock(rhs2(), method="imex_euler"), ArgumentError,
     r"^implicit: method 'imex_euler' is an IMEX scheme .* needs implicit=L"),
    # IMEXBlock
    ("imex-rhs-int", lambda: IMEXBlock(3), ArgumentTypeError, r"^rhs: expected an operator"),
    ("imex-boundary", lambda: IMEXBlock(LeanConv2d(2, 2), boundary="zero"), ArgumentError,
     r"^boundary: expected 'periodic' or 'reflect'"),
    ("imex-kernel-even", lambda: IMEXBlock(LeanConv2d(2, 2), kernel_size=2), ArgumentError,
     r"^kernel_size: expected an odd integer >= 3"),
    ("imex-explicit-method", lambda: IMEXBlock(LeanConv2d(2, 2), method="rk4"), ArgumentError,
     r"^method: IMEXBlock needs an IMEX scheme"),
    ("imex-input-channels", lambda: IMEXBlock(LeanConv2d(2, 2))(img(3)), ArgumentError,
     r"^y: expected a tensor of shape \(\.\.\., 2, H, W\)"),
    ("imex-implicit-channels",
     lambda: IMEXBlock(LeanConv2d(2, 2), implicit=ConvFFT(torch.randn(3, 1, 3, 3))),
     ArgumentError, r"^implicit: has 3 channels, but rhs acts on 2 channels"),
    ("imex-implicit-str", lambda: IMEXBlock(LeanConv2d(2, 2), implicit="L"), ArgumentTypeError,
     r"^implicit: expected a linear operator"),
    ("imex-activation-with-rhs", lambda: IMEXBlock(rhs2(), activation="tanh"), ArgumentError,
     r"^activation: applies only when rhs is an operator"),
    ("imex-steps-zero", lambda: IMEXBlock(LeanConv2d(2, 2), steps=0), ArgumentError,
     r"^steps: expected an int >= 1"),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, OdenetError)


def test_shape_errors_are_runtime_errors_too():
    """torchvision raises RuntimeError for a wrong offset or mask; so does odenet (and the
    same error is a ValueError through ArgumentError)."""
    shape_cases = [c for c in CASES if c[2] is ShapeError]
    assert len(shape_cases) >= 6
    for _, call, _, _ in shape_cases:
        with pytest.raises(RuntimeError):
            call()
        with pytest.raises(ValueError):
            call()


def test_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60

"""The Taylor and adjoint tests: pass on right Jacobians, fail on wrong ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from resdyn import load_model
from resdyn.check import check_jacobian, check_model
from resdyn.operators import JacobianOperator, function_jacobian

pytestmark = pytest.mark.usefixtures("single_thread")
F64 = torch.float64


@dataclass(frozen=True, eq=False, repr=False)
class WrongVJP(JacobianOperator):
    """A Jacobian whose VJP is off by a small rank-one term (JVP right)."""

    def rmatmat(self, w: torch.Tensor) -> torch.Tensor:
        out = super().rmatmat(w)
        return out + 1e-3 * w.sum(0, keepdim=True) * torch.ones_like(out)

    def rmatvec(self, w: torch.Tensor) -> torch.Tensor:
        return self.rmatmat(w.reshape(-1, 1)).reshape(-1)


@dataclass(frozen=True, eq=False, repr=False)
class WrongJVP(JacobianOperator):
    """A Jacobian whose JVP is scaled by 1.01 (VJP right)."""

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        return 1.01 * super().matmat(v)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return 1.01 * super().matvec(v)


def _smooth():
    a = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    return function_jacobian(lambda x: torch.tanh(a @ x) + x.sum() ** 2, torch.randn(5) / 2)


def test_smooth_function_has_orders_one_and_two():
    op = _smooth()
    res = check_jacobian(op, op.fn, op.x)
    assert res.passed and res.taylor_passed and res.adjoint_passed
    assert res.order_linear == pytest.approx(1.0, abs=0.02)
    assert res.order_quadratic == pytest.approx(2.0, abs=0.1)
    assert res.adjoint_error < 1e-14
    assert np.all(np.diff(res.err_quadratic) < 0)


def test_wrong_vjp_fails_the_adjoint_test():
    op = _smooth()
    wrong = WrongVJP(op.fn, op.x, op.out_size)
    res = check_jacobian(wrong, wrong.fn, wrong.x)
    assert res.taylor_passed  # J v is right...
    assert not res.adjoint_passed and not res.passed  # ...but Jᵀ w is not
    assert res.adjoint_error > 1e-5


def test_wrong_jvp_fails_the_taylor_test():
    op = _smooth()
    wrong = WrongJVP(op.fn, op.x, op.out_size)
    res = check_jacobian(wrong, wrong.fn, wrong.x)
    assert not res.taylor_passed and not res.passed
    assert res.order_quadratic == pytest.approx(1.0, abs=0.1)  # the remainder is ε·0.01·Jv


def test_unit_with_wrong_vjp_fails():
    model = load_model("cifar-resnet20", in_channels=1)
    from resdyn import capture, units
    from resdyn.operators import unit_jacobian

    u = units(model, (1, 8, 8))[0]
    op = unit_jacobian(u, capture(model, torch.randn(1, 1, 8, 8), [u]).inputs[u.name][0])
    assert check_jacobian(op, op.fn, op.x).passed
    wrong = WrongVJP(op.fn, op.x, op.out_size, op.zero_rows)
    assert not check_jacobian(wrong, wrong.fn, wrong.x).passed


def test_check_model_every_unit_and_stage():
    torch.manual_seed(0)  # the random weights, whatever ran before this test
    df = check_model(load_model("cifar-resnet20", in_channels=1), (1, 8, 8), seed=0)
    assert list(df.columns) == ["name", "kind", "stage", "n_in", "n_out", "order_linear",
                                "order_quadratic", "adjoint_error", "remainder", "passed"]
    # a NaN order is always a remainder at round-off (exactly linear along v), never a failure
    assert (df.remainder[df.order_quadratic.isna()] == "round-off").all()
    assert len(df) == 9 + 3
    assert (df.kind == "stage").sum() == 3 and (df.kind == "downsampling").sum() == 2
    assert df.passed.all()
    assert (df.adjoint_error < 1e-12).all()
    assert np.allclose(df.order_linear, 1.0, atol=0.05)


def test_check_model_accepts_an_image_and_a_unit_list():
    from resdyn import units

    model = load_model("preresnet(1)")
    us = units(model, (3, 8, 8))
    df = check_model(model, torch.randn(3, 8, 8), unit_list=us[:2], with_stages=False)
    assert df.name.tolist() == [u.name for u in us[:2]] and df.passed.all()
    with pytest.raises(ValueError, match=r"does not take inputs of shape \(8, 8\).*"
                                         r"expects input shape \(3, 32, 32\)"):
        check_model(model, (8, 8))


def test_check_command_says_pass_fail_and_explains_missing_orders():
    from click.testing import CliRunner

    from resdyn.cli import app

    r = CliRunner().invoke(app, ["check", "--model", "digits-resnet20"])
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "True" not in r.output and "False" not in r.output
    assert "12 PASS, 0 FAIL" in r.output
    if "exact*" in r.output:  # a NaN order is shown as exact, with its reason
        assert "nan" not in r.output and "round-off" in r.output

"""Jacobian operators against dense Jacobians from torch.autograd in float64."""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch
import torchvision
from conftest import reference_jacobian
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from resdyn import capture, load_model, stages, units
from resdyn.models.blocks import ResidualUnit
from resdyn.models.resnets import cifar_resnet
from resdyn.operators import (
    MatrixOperator,
    compose,
    function_jacobian,
    module_jacobian,
    residual_jacobian,
    restrict,
    shortcut_jacobian,
    stage_jacobian,
    unit_jacobian,
)
from resdyn.spectra import eigenvalues

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("single_thread")


def _pytorchcv():
    from pytorchcv.model_provider import get_model
    return get_model("resnet20_cifar10", pretrained=False).eval()


# (model factory, discovery shape, unit names, analysis input shape per unit or None)
FAMILIES = {
    "resdyn-cifar": (lambda: load_model("cifar-resnet20", in_channels=1), (1, 8, 8),
                     ["stages.0.1", "stages.1.0"]),
    "resdyn-preact": (lambda: load_model("preresnet(1)"), (3, 8, 8), ["stages.0.0", "stages.1.0"]),
    "torchvision-basic": (lambda: torchvision.models.resnet18(weights=None).eval(), (3, 16, 16),
                          ["layer2.0", "layer2.1"]),
    "torchvision-bottleneck": (lambda: torchvision.models.resnet50(weights=None).eval(),
                               (3, 16, 16), ["layer3.0", "layer3.1"]),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    make, shape, names = FAMILIES[request.param]
    torch.manual_seed(0)
    model = make()
    us = [u for u in units(model, shape) if u.name in names]
    acts = capture(model, torch.randn(1, *shape), us)
    return model, us, acts


def test_unit_operator_matches_autograd(family):
    model, us, acts = family
    for u in us:
        x = acts.inputs[u.name][0]
        op = unit_jacobian(u, x)
        ref = reference_jacobian(u.module, x)
        assert op.shape == tuple(ref.shape) == (u.n_out, u.n_in)
        assert op.dtype == F64
        dense = op.dense()
        torch.testing.assert_close(dense, ref, rtol=1e-12, atol=1e-12)
        g = torch.Generator().manual_seed(1)
        v = torch.randn(op.shape[1], 3, generator=g, dtype=F64)
        w = torch.randn(op.shape[0], 3, generator=g, dtype=F64)
        torch.testing.assert_close(op.matmat(v), ref @ v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.rmatmat(w), ref.T @ w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.matvec(v[:, 0]), ref @ v[:, 0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.rmatvec(w[:, 0]), ref.T @ w[:, 0], rtol=1e-10, atol=1e-12)
        if op.zero_rows is not None:  # rows killed by the output ReLU are exactly zero
            assert op.zero_rows.any()
            assert ref[op.zero_rows].abs().max() == 0


def test_pytorchcv_units_match_autograd():
    features = _pytorchcv().features
    # the fully convolutional part (the head pools 8x8), discovered at a small input to keep
    # the test fast
    body = nn.Sequential(features.init_block, features.stage1, features.stage2).eval()
    us = {u.name: u for u in units(body, (3, 4, 4))}
    torch.manual_seed(0)
    for name in ("1.unit2", "2.unit1"):
        x = torch.relu(torch.randn(*us[name].in_shape))
        assert x.shape == (16, 4, 4)
        op = unit_jacobian(us[name], x)
        torch.testing.assert_close(op.dense(), reference_jacobian(us[name].module, x),
                                   rtol=1e-12, atol=1e-12)


def _linear_unit(c: int = 3):
    torch.manual_seed(0)
    conv = nn.Conv2d(c, c, 1, bias=False)
    unit = ResidualUnit(conv, nn.Identity(), nn.Identity()).eval()
    return unit, conv.weight.detach().to(F64).reshape(c, c)


def test_linear_unit_is_identity_plus_a():
    module, w = _linear_unit()
    (u,) = units(nn.Sequential(module), (3, 2, 2), names=["0"])
    a = torch.kron(w, torch.eye(4, dtype=F64))  # 1x1 conv on (C, H, W) flattened channel-major
    x = torch.randn(3, 2, 2)
    eye = torch.eye(12, dtype=F64)
    torch.testing.assert_close(unit_jacobian(u, x).dense(), eye + a, rtol=0, atol=1e-15)
    torch.testing.assert_close(unit_jacobian(u, x, alpha=0.25).dense(), 0.25 * eye + a,
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(residual_jacobian(u, x).dense(), a, rtol=0, atol=1e-15)
    torch.testing.assert_close(shortcut_jacobian(u, x).dense(), eye, rtol=0, atol=0)
    assert unit_jacobian(u, x).zero_rows is None  # no output ReLU


def test_function_jacobian_of_x_plus_ax():
    a = torch.randn(5, 5, dtype=F64)
    op = function_jacobian(lambda x: x + a @ x, torch.randn(5))
    torch.testing.assert_close(op.dense(), torch.eye(5, dtype=F64) + a, rtol=0, atol=1e-15)


def test_scaled_shortcut_formula():
    """J = diag(σ'(α S + R))(α J_S + J_R) on a down-sampling unit (projection shortcut)."""
    model = load_model("cifar-resnet20", in_channels=1)
    u = units(model, (1, 8, 8))[3]
    x = capture(model, torch.randn(1, 1, 8, 8), [u]).inputs[u.name][0]
    alpha = 0.5
    op = unit_jacobian(u, x, alpha=alpha)
    on = (~op.zero_rows).to(F64)[:, None]
    expected = on * (alpha * shortcut_jacobian(u, x).dense() + residual_jacobian(u, x).dense())
    torch.testing.assert_close(op.dense(), expected, rtol=1e-12, atol=1e-13)


def test_stage_is_product_of_units():
    model = load_model("cifar-resnet20", in_channels=1)
    us = units(model, (1, 8, 8))
    acts = capture(model, torch.randn(1, 1, 8, 8), us)
    for stage in stages(us)[:2]:
        x = acts.inputs[stage[0].name][0]
        ops, xi = [], x.to(F64)
        ref_units = [copy.deepcopy(u.module).to(F64).eval() for u in stage]
        for u, ref in zip(stage, ref_units, strict=True):
            ops.append(unit_jacobian(u, xi))
            with torch.no_grad():
                xi = ref(xi[None])[0]
        product = compose(*reversed(ops))
        op = stage_jacobian(stage, x)
        expected = ops[-1].dense()
        for o in reversed(ops[:-1]):
            expected = expected @ o.dense()
        torch.testing.assert_close(op.dense(), expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(product.dense(), expected, rtol=1e-10, atol=1e-12)
        assert torch.equal(op.zero_rows, ops[-1].zero_rows)


def test_inplace_activations_do_not_corrupt():
    """torchvision uses ReLU(inplace=True); results equal those of the out-of-place twin."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    u, ut = (units(n, (3, 16, 16), names=["layer2.1"])[0] for n in (net, twin))
    x = torch.randn(128, 2, 2)
    x_before = x.clone()
    op, op_t = unit_jacobian(u, x), unit_jacobian(ut, x)
    torch.testing.assert_close(op.dense(), op_t.dense(), rtol=0, atol=0)
    v = torch.randn(op.shape[1], dtype=F64)
    torch.testing.assert_close(op.matvec(v), op_t.matvec(v), rtol=0, atol=0)
    torch.testing.assert_close(op.rmatvec(v), op_t.rmatvec(v), rtol=0, atol=0)
    assert torch.equal(x, x_before)
    # a function that writes into its input in place must not move the point either
    f_op = function_jacobian(lambda t: torch.relu_(t) * 2.0, x.reshape(-1))
    assert torch.equal(f_op.x, x.reshape(-1).to(F64))
    f_op.dense()
    assert torch.equal(f_op.x, x.reshape(-1).to(F64))


def test_batchnorm_train_mode_warns_and_leaves_model_alone():
    torch.manual_seed(0)
    model = load_model("cifar-resnet20", in_channels=1)
    u = units(model, (1, 8, 8))[1]
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = unit_jacobian(u, x).dense()  # eval mode: no warning
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        op = unit_jacobian(u, x)
    torch.testing.assert_close(op.dense(), expected, rtol=0, atol=0)
    assert model.training and u.module.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert next(model.parameters()).dtype == torch.float32


def test_module_jacobian_of_a_submodule():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    sub = net.get_submodule("layer2.0.conv1")
    x = torch.randn(1, 64, 4, 4)
    op = module_jacobian(sub, x)
    ref = torch.autograd.functional.jacobian(
        lambda t: nn.functional.conv2d(t.reshape(1, 64, 4, 4), sub.weight.to(F64), stride=2,
                                       padding=1).reshape(-1), x.to(F64).reshape(-1))
    torch.testing.assert_close(op.dense(), ref, rtol=1e-12, atol=1e-12)
    assert sub.weight.dtype == torch.float32  # the user's module is untouched


def test_float32_option():
    model = load_model("cifar-resnet20", in_channels=1)
    u = units(model, (1, 8, 8))[0]
    x = torch.randn(16, 8, 8)
    op = unit_jacobian(u, x, dtype=torch.float32)
    assert op.dtype == torch.float32
    torch.testing.assert_close(op.dense().double(), unit_jacobian(u, x).dense(), rtol=1e-4,
                               atol=1e-5)


def test_scipy_bridge_and_adjoint():
    a = torch.randn(7, 4, dtype=F64)
    op = MatrixOperator(a)
    lin = op.aslinearoperator()
    v, w = np.random.default_rng(0).standard_normal(4), np.random.default_rng(1).standard_normal(7)
    np.testing.assert_allclose(lin.matvec(v), a.numpy() @ v, rtol=1e-14)
    np.testing.assert_allclose(lin.rmatvec(w), a.numpy().T @ w, rtol=1e-14)
    np.testing.assert_allclose(lin.matmat(np.eye(4)), a.numpy(), rtol=1e-14)
    np.testing.assert_allclose(lin.H.matvec(w), a.numpy().T @ w, rtol=1e-14)
    torch.testing.assert_close(op.T.dense(), a.T)
    assert op.T.T is op


def test_errors_at_the_boundary():
    a, b = MatrixOperator(torch.ones(3, 4)), MatrixOperator(torch.ones(5, 2))
    with pytest.raises(ValueError, match="cannot compose"):
        compose(a, b)
    model = load_model("cifar-resnet20", in_channels=1)
    u = units(model, (1, 8, 8))[0]
    with pytest.raises(ValueError, match=r"expected one input \(C, H, W\)"):
        unit_jacobian(u, torch.randn(2, 16, 8, 8))
    # another size than the unit's in_shape (16, 8, 8): refused, both shapes named
    for x in (torch.randn(16, 16, 16), torch.randn(1, 16, 4, 4), torch.randn(8, 8, 8)):
        got = str(tuple(x.shape[-3:]))
        with pytest.raises(ValueError, match=rf"shape \(16, 8, 8\).*got {re.escape(got)}"):
            unit_jacobian(u, x)
        with pytest.raises(ValueError, match=rf"shape \(16, 8, 8\).*got {re.escape(got)}"):
            residual_jacobian(u, x)
        with pytest.raises(ValueError, match=rf"shape \(16, 8, 8\).*got {re.escape(got)}"):
            stage_jacobian(stages(units(model, (1, 8, 8)))[0], x)
    assert unit_jacobian(u, torch.randn(1, 16, 8, 8)).shape == (1024, 1024)  # batch of one
    with pytest.raises(ValueError, match="finite"):
        unit_jacobian(u, torch.randn(16, 8, 8), alpha=float("nan"))
    (plain,) = units(model, (1, 8, 8), names=["stem"])
    with pytest.raises(ValueError, match="cannot be scaled|cannot be separated"):
        unit_jacobian(plain, torch.randn(1, 8, 8), alpha=0.5)
    with pytest.raises(ValueError, match="at least one unit"):
        stage_jacobian([], torch.randn(16, 8, 8))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), k=st.integers(1, 4), seed=st.integers(0, 99))
def test_matrix_products_restrict_and_compose(m, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=g, dtype=F64)
    b = torch.randn(n, 3, generator=g, dtype=F64)
    op = MatrixOperator(a)
    v = torch.randn(n, k, generator=g, dtype=F64)
    torch.testing.assert_close(op.matmat(v), a @ v)
    torch.testing.assert_close(op.rows(torch.arange(m)), a)
    torch.testing.assert_close(op.columns(torch.arange(n)), a.T)
    rows = torch.rand(m, generator=g) < 0.5
    cols = torch.rand(n, generator=g) < 0.5
    torch.testing.assert_close(restrict(op, rows=rows, cols=cols).dense(), a[rows][:, cols])
    torch.testing.assert_close(restrict(op, rows=rows).T.dense(), a[rows].T)
    torch.testing.assert_close((op @ MatrixOperator(b)).dense(), a @ b)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), seed=st.integers(0, 99))
def test_jacobian_of_tanh_ax(m, n, seed):
    """J of x -> tanh(A x) is diag(1 - tanh(Ax)²) A, any shape."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=g, dtype=F64)
    x = torch.randn(n, generator=g, dtype=F64)
    op = function_jacobian(lambda t: torch.tanh(a @ t), x)
    expected = (1 - torch.tanh(a @ x) ** 2)[:, None] * a
    torch.testing.assert_close(op.dense(), expected, rtol=1e-12, atol=1e-14)
    w = torch.randn(m, 2, generator=g, dtype=F64)
    torch.testing.assert_close(op.rmatmat(w), expected.T @ w, rtol=1e-12, atol=1e-14)


class _Cube(torch.autograd.Function):
    """x³ with a backward that cannot be differentiated again."""

    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * t

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g


def test_linearized_jacobian_matches_and_falls_back(family):
    from resdyn.operators import LinearizedJacobian, linearize, linearized

    _, us, acts = family
    u = us[0]
    op = unit_jacobian(u, acts.inputs[u.name][0])
    lin = linearize(op)
    assert isinstance(lin, LinearizedJacobian) and lin.shape == op.shape
    torch.testing.assert_close(lin.dense(), op.dense(), rtol=1e-12, atol=1e-13)
    v = torch.randn(op.shape[1], dtype=F64)
    torch.testing.assert_close(lin.matvec(v), op.matvec(v), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(lin.rmatvec(op.matvec(v)), op.rmatvec(op.matvec(v)),
                               rtol=1e-12, atol=1e-13)
    # rows known zero: exactly the all-zero rows of the autograd Jacobian with an output ReLU
    # (the killed outputs), none without one (an identity shortcut keeps every row non-zero)
    zero_in_ref = (reference_jacobian(u.module, acts.inputs[u.name][0]) == 0).all(dim=1)
    if isinstance(u.parts.activation, nn.ReLU):
        assert zero_in_ref.any()
        assert torch.equal(op.zero_rows, zero_in_ref) and torch.equal(lin.zero_rows, zero_in_ref)
    else:
        assert op.zero_rows is None and lin.zero_rows is None and not zero_in_ref.any()
    both = linearized(compose(op.T, op))
    assert all(isinstance(o.op if hasattr(o, "op") else o, LinearizedJacobian) for o in both.ops)
    # no double backward: the plain operator comes back
    cube = function_jacobian(_Cube.apply, torch.randn(4))
    assert linearize(cube) is cube


def _factored_against_reference(u, x) -> int:
    """A square identity-shortcut unit: its factors exist, reproduce J, and the factored
    eigenvalues equal eig of the autograd Jacobian. Returns the branch rank bound r."""
    op = unit_jacobian(u, x)
    assert op.factors is not None, u.name
    f = op.factors
    ref = reference_jacobian(u.module, x)
    mask = torch.ones(op.shape[0], dtype=F64) if op.zero_rows is None else \
        (~op.zero_rows).to(F64)
    rebuilt = mask[:, None] * (f.alpha * torch.eye(op.shape[0], dtype=F64)
                               + f.outer_jacobian().dense() @ f.inner_jacobian().dense())
    torch.testing.assert_close(rebuilt, ref, rtol=1e-11, atol=1e-12)
    r = int((~f.inner_jacobian().zero_rows).sum())
    res = eigenvalues(op, method="dense")
    assert f"{r}x{r}" in res.message
    want = torch.linalg.eigvals(ref).numpy()
    values = np.asarray(res.values)
    assert len(values) == len(want)
    left = list(want)
    for v in values:  # equal as multisets
        i = int(np.argmin(np.abs(np.array(left) - v)))
        assert abs(left[i] - v) <= 1e-9 * max(1.0, np.abs(want).max()), (v, left[i])
        left.pop(i)
    return r


def test_factored_eigenvalues_equal_dense(family):
    """eig(D(I + UVᵀ)) through the r x r product VᵀU, for every recognised family."""
    _, us, acts = family
    square = [u for u in us if u.in_shape == u.out_shape and not u.parts.projection]
    assert square
    for u in square:
        r = _factored_against_reference(u, acts.inputs[u.name][0])
        assert 0 < r < u.n_in
    for u in us:
        if u.in_shape != u.out_shape or u.parts.projection:
            assert unit_jacobian(u, acts.inputs[u.name][0]).factors is None


def test_factored_eigenvalues_pytorchcv():
    features = _pytorchcv().features
    body = nn.Sequential(features.init_block, features.stage1).eval()
    us = {u.name: u for u in units(body, (3, 4, 4))}
    torch.manual_seed(0)
    acts = capture(body, torch.randn(1, 3, 4, 4), list(us.values()))
    _factored_against_reference(us["1.unit2"], acts.inputs["1.unit2"][0])


def test_unit_jacobian_of_a_model_by_unit_name_is_the_dense_jacobian_at_that_input():
    """unit_jacobian(model, x, name) linearizes the named unit at the input it receives when the
    network runs on x: the dense autograd Jacobian of that submodule at the recorded input."""
    torch.manual_seed(0)
    model = cifar_resnet(8, in_channels=1).eval()  # built here: random weights, 3 units
    x = torch.randn(1, 8, 8)
    seen = {}
    ref = copy.deepcopy(model).double().eval()
    module = ref.get_submodule("stages.1.0")
    hook = module.register_forward_hook(lambda m, args, out: seen.update(x=args[0].detach()))
    with torch.no_grad():
        ref(x[None].double())
    hook.remove()
    dense = reference_jacobian(module, seen["x"][0])
    for point in (x, x[None]):  # one input or a batch of one
        op = unit_jacobian(model, point, "stages.1.0")
        assert op.shape == tuple(dense.shape) == (32 * 4 * 4, 16 * 8 * 8)
        torch.testing.assert_close(op.dense(), dense, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"no unit 'stages\.9\.9'; its units are "
                                         r"stages\.0\.0, stages\.1\.0, stages\.2\.0$"):
        unit_jacobian(model, x, "stages.9.9")
    with pytest.raises(ValueError, match="linearizes at one input; got a batch of 2"):
        unit_jacobian(model, torch.randn(2, 1, 8, 8), "stages.1.0")
    with pytest.raises(TypeError, match="name the unit"):
        unit_jacobian(model, x)

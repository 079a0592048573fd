"""Residual steps found from what a module's forward computes, not from its class.

One forward pass of the model on an input records, for every module call, the graph of the
module's own forward (a :class:`torch.fx.Graph`): the torch functions it calls (seen through a
:class:`~torch.overrides.TorchFunctionMode`, with concrete shapes, so code that branches on a
shape or an attribute is followed as it ran) and the calls of its child modules as single nodes.
A residual step of a module is an addition whose terms are its input x (or a function of x
along a path that no other term enters: a projection shortcut) and branches that depend on x;
the operations after the addition that are a chain of the sum alone are its activation σ, up to
the point where the stream forks into the next step (a transformer block is two steps) or ends
at the module's output. Each step becomes :class:`~resdyn.models.parts.UnitParts` whose parts
run the recorded subgraphs on whatever module they are bound to (a copy for analysis too), and
the steps composed must reproduce the module's recorded output, else the module is no unit.

Why a recording and not :func:`torch.fx.symbolic_trace`: symbolic tracing fails on code that
reads a shape (``B, H, W, C = x.shape``: Swin's windows, many of timm's blocks); the recording
sees concrete values, which is what a unit is anyway (a map at one input shape). Why not
:func:`torch.export`: it lowers to ATen (a ReLU module becomes an op, so module surgery such as
switching ReLUs off no longer reaches it) and costs seconds per module.

The recording is :mod:`resdyn.models.recording`; the rules that find steps in a graph and tell
an affine path from a nonlinear one are :mod:`resdyn.models.steps`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Block(nn.Module):  # x -> relu(x + W2 relu(W1 x))
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.f = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    ...     def forward(self, x):
    ...         return torch.relu(x + self.f(x))
    >>> net = nn.Sequential(Block(), Block())
    >>> found = discover(net, torch.randn(1, 4))
    >>> [(r.path, r.steps, r.verified) for r in found.reports if r.adds]
    [('0', 1, True), ('1', 1, True)]
    >>> parts = found.parts[net[0]][0]
    >>> x = torch.randn(1, 4)
    >>> torch.allclose(parts(x), net[0](x)), parts.projection
    (True, False)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from .parts import UnitParts
from .recording import Recording, recording
from .steps import POOLS, Step, find_steps, get_path, nonlinear, subgraph

# ---------------------------------------------------------------- parts bound to a module

def _bound(graph: fx.Graph, module: nn.Module, constants: dict[str, Any]) -> fx.GraphModule:
    """``graph`` as a callable whose call_module / get_attr targets are read from ``module``
    (constants follow the module's device and floating dtype)."""
    p = next(module.parameters(), None)
    root: dict[str, Any] = {}
    for n in graph.nodes:
        if n.op in ("call_module", "get_attr"):
            t = str(n.target)
            if t in constants:
                c = constants[t]
                root[t] = (c.to(p.device, p.dtype if c.is_floating_point() else c.dtype)
                           if p is not None else c)
            else:
                root[t] = get_path(module, t)
    return fx.GraphModule(root, graph)


@dataclass(frozen=True)
class Recipe:
    """How a module's steps are computed: its recorded graph, its steps, its constants."""

    graph: fx.Graph
    steps: tuple[Step, ...]
    constants: dict[str, Any]
    batch: int = 1

    def parts(self, module: nn.Module) -> tuple[UnitParts, ...]:
        """The steps as UnitParts that run on ``module`` (the recorded one, or a copy).

        The recording holds the shapes it saw, the batch size too (a window partition
        reshapes to it), so a batch of another size runs in chunks of the recorded one.
        """
        lead = {n.name: n.meta.get("lead") for n in self.graph.nodes}

        def part(start: str, end: str) -> Callable[[Tensor], Tensor]:
            fn = _bound(subgraph(self.graph, start, end), module, self.constants)
            return _chunked(fn, lead.get(start) or self.batch)

        out = []
        many = len(self.steps) > 1
        names = _distinct([s.name for s in self.steps])
        for step, name in zip(self.steps, names, strict=True):
            shortcut = (part(step.start, step.shortcut) if step.shortcut != step.start
                        else _identity)
            branch = _sum([part(step.start, b) for b in step.branches])
            activation = part(step.add, step.end) if step.end != step.add else _identity
            out.append(UnitParts(shortcut, branch, activation, step.projection,
                                 family="discovered", step=name if many else ""))
        return tuple(out)


def _identity(x: Tensor) -> Tensor:
    return x


def _chunked(fn: Callable[[Tensor], Tensor], batch: int) -> Callable[[Tensor], Tensor]:
    """``fn`` on a batch of any size, in chunks of ``batch`` (the size it was recorded at)."""
    def run(x: Tensor) -> Tensor:
        if not x.dim() or x.shape[0] == batch:
            return fn(x)
        if x.shape[0] % batch:
            raise ValueError(f"a discovered step was recorded on batches of {batch}; got a "
                             f"batch of {x.shape[0]}")
        return torch.cat([fn(c) for c in x.split(batch)])

    return run


def _sum(fns: list[Callable[[Tensor], Tensor]]) -> Callable[[Tensor], Tensor]:
    if len(fns) == 1:
        return fns[0]

    def branch(x: Tensor) -> Tensor:
        total = fns[0](x)
        for f in fns[1:]:
            total = total + f(x)
        return total

    return branch


def _distinct(names: list[str]) -> list[str]:
    out = []
    for i, n in enumerate(names):
        n = n or f"step{i}"
        out.append(n if names.count(n) == 1 else f"{n}{i}")
    return out


# ---------------------------------------------------------------- the model's discovery

@dataclass(frozen=True)
class Report:
    """What discovery saw in one module's forward: the additions of two computed tensors,
    the steps found, whether they reproduce the module's output, and why not."""

    path: str
    cls: str
    adds: int
    steps: int
    verified: bool
    why: str = ""


@dataclass(frozen=True)
class Discovery:
    """Discovered parts per module (weakly keyed) and a report per module called."""

    parts: weakref.WeakKeyDictionary
    recipes: weakref.WeakKeyDictionary
    reports: tuple[Report, ...]


def discover(model: nn.Module, x: Tensor, skip: Callable[[nn.Module], bool] = lambda m: False,
             note: str = "") -> Discovery:
    """Record ``model`` on ``x`` (a batch) and find every module's residual steps.

    Args:
        skip: modules not to analyse (e.g. those an adapter already knows); still recorded.
        note: added to the message when the model's forward fails on ``x``.

    Raises:
        ValueError: the forward pass fails on ``x`` (see :func:`resdyn.models.probe.probe`).

    Returns:
        :class:`Discovery`: ``parts[module]`` the steps of each module that has verified ones.
    """
    from .probe import probe

    paths = {id(m): n for n, m in model.named_modules()}
    with recording(model) as rec:
        probe(model, x, note=note)
    parts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    recipes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    reports = []
    for key, r in rec.done.items():
        if key not in paths or skip(r.module):
            continue
        if r.graph is None:
            reports.append(Report(paths[key], type(r.module).__name__, 0, 0, False, r.why))
            continue
        steps, adds, why = find_steps(r.graph, _weights(r.module))
        if not steps:
            reports.append(Report(paths[key], type(r.module).__name__, adds, 0, False, why))
            continue
        recipe = Recipe(r.graph, tuple(steps), r.constants, r.x.shape[0] if r.x is not None else 1)
        verified, why = _verify(recipe, r, rec.done)
        reports.append(Report(paths[key], type(r.module).__name__, adds, len(steps), verified,
                              why))
        if verified:
            recipes[r.module] = recipe
            parts[r.module] = recipe.parts(r.module)
    return Discovery(parts, recipes, tuple(reports))


def _weights(module: nn.Module) -> Callable[[fx.Node], int]:
    """A node's size: one operation plus the parameters of the module or tensor it reads."""
    def weight(n: fx.Node) -> int:
        if n.op in ("call_module", "get_attr"):
            try:
                target = get_path(module, str(n.target))
            except AttributeError:
                return 1
            if isinstance(target, nn.Module):
                return 1 + sum(p.numel() for p in target.parameters())
            if isinstance(target, Tensor):
                return 1 + target.numel()
        return 1

    return weight


def _verify(recipe: Recipe, r: Recording, done: dict[int, Recording]) -> tuple[bool, str]:
    """Whether the steps composed reproduce the recorded output from the recorded input."""
    assert r.x is not None and r.y is not None  # a recording with a graph has both
    try:
        with torch.no_grad():
            y = r.x
            for p in recipe.parts(r.module):
                y = p(y)
    except Exception as e:  # a replay the recording cannot support
        return False, f"its steps cannot be replayed ({type(e).__name__}: {e})"
    if y.shape == r.y.shape and torch.allclose(y, r.y, rtol=1e-4, atol=1e-5):
        for step in recipe.steps:
            if step.shortcut == step.start:
                continue
            # a projection shortcut is an affine map (a 1x1 conv and a norm, a pooling)
            # beside a nonlinear branch; two nonlinear paths summed are a fusion, and
            # affine paths summed are one affine map (re-parameterisable, as RepVGG's)
            fork = step.fork or step.start  # a prefix both share is part of both
            if nonlinear(recipe.graph, fork, step.shortcut, r.module, done, POOLS):
                return False, ("its sum adds nonlinear parallel paths (a fusion), none of them "
                               "the input or an affine map of it: not x + f(x)")
            if not any(nonlinear(recipe.graph, fork, b, r.module, done)
                       for b in step.branches):
                return False, ("its sum is of parallel affine branches (re-parameterisable, "
                               "as RepVGG's), one affine map, not x + f(x) of a nonlinear f")
        return True, ""
    err = (y - r.y).abs().max().item() if y.shape == r.y.shape else "another shape"
    return False, f"its steps do not reproduce its output (largest difference {err})"

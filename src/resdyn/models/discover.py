"""Residual steps found from what a module's forward computes, not from its class.

One forward pass of the model on an input records, for every module call, the graph of the
module's own forward (a :class:`torch.fx.Graph`): the torch functions it calls (seen through a
:class:`~torch.overrides.TorchFunctionMode`, with concrete shapes, so code that branches on a
shape or an attribute is followed as it ran) and the calls of its child modules as single nodes.
A residual step of a module is an addition whose terms are its input x (or a function of x
along a path that no other term enters: a projection shortcut) and branches that depend on x;
the operations after the addition that are a chain of the sum alone are its activation σ, up to
the point where the stream forks into the next step (a transformer block is two steps) or ends
at the module's output. Each step becomes :class:`~resdyn.models.adapters.UnitParts` whose parts
run the recorded subgraphs on whatever module they are bound to (a copy for analysis too), and
the steps composed must reproduce the module's recorded output, else the module is no unit.

Why a recording and not :func:`torch.fx.symbolic_trace`: symbolic tracing fails on code that
reads a shape (``B, H, W, C = x.shape``: Swin's windows, many of timm's blocks); the recording
sees concrete values, which is what a unit is anyway (a map at one input shape). Why not
:func:`torch.export`: it lowers to ATen (a ReLU module becomes an op, so module surgery such as
switching ReLUs off no longer reaches it) and costs seconds per module.

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

import operator
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.overrides import TorchFunctionMode

from .adapters import UnitParts

ADDS = {operator.add, torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__}
#: in-place methods and their out-of-place forms (recorded out of place; aliasing is checked
#: by the replay against the recorded output)
IN_PLACE = {"__iadd__": Tensor.__add__, "__isub__": Tensor.__sub__, "__imul__": Tensor.__mul__,
            "__itruediv__": Tensor.__truediv__}


@dataclass
class _Frame:
    """One module call being recorded: its graph, which node each live tensor is."""

    module: nn.Module
    graph: fx.Graph = field(default_factory=fx.Graph)
    env: dict[int, fx.Node] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # id of a child/param -> relative path
    constants: dict[str, Any] = field(default_factory=dict)
    valid: bool = True
    why: str = ""
    x: Tensor | None = None
    y: Tensor | None = None

    def fail(self, why: str) -> None:
        if self.valid:
            self.valid, self.why = False, why


@dataclass
class Recording:
    """A module call's recorded graph (``why``: what made it unusable, when ``graph`` is None)."""

    module: nn.Module
    graph: fx.Graph | None
    constants: dict[str, Any]
    x: Tensor | None
    y: Tensor | None
    why: str = ""


class _Recorder(TorchFunctionMode):
    """Records every module call's own forward into a graph (see the module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.stack: list[_Frame] = []
        self.done: dict[int, Recording] = {}
        self.keep: list[Any] = []  # every tensor seen stays alive: ids are never reused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not (self.stack and self.stack[-1].valid):
            return func(*args, **kwargs)
        inputs = list(_tensors((args, kwargs)))
        versions = [t._version for t in inputs]  # an in-place op raises its tensor's version
        out = func(*args, **kwargs)
        changed = any(t._version != v for t, v in zip(inputs, versions, strict=True))
        self._op(self.stack[-1], func, args, kwargs, out, inputs, changed)
        return out

    def _op(self, frame: _Frame, func: Any, args: tuple, kwargs: dict, out: Any,
            inputs: list[Tensor], changed: bool) -> None:
        self.keep.append(out)
        if not _has_tensor(out):
            return  # a shape, a dtype, a number: a concrete value from here on
        if not changed and isinstance(out, Tensor) and any(out is a for a in inputs):
            return  # returns its input unchanged (x.contiguous(), x.to(same dtype)): an alias
        if changed:  # replayed out of place
            name = getattr(func, "__name__", "")
            if kwargs.get("inplace") is True:
                kwargs = {**kwargs, "inplace": False}
            elif name in IN_PLACE or name.endswith("_"):
                func = IN_PLACE.get(name) or getattr(Tensor, name.rstrip("_"), None)
                if func is None:
                    frame.fail(f"in-place {name} has no out-of-place form")
                    return
            else:
                frame.fail(f"{name} changes its input in place")
                return
        node = frame.graph.call_function(func, *self._map(frame, (args, kwargs)))
        self._bind(frame, out, node)

    def _bind(self, frame: _Frame, out: Any, node: fx.Node) -> None:
        if isinstance(out, Tensor):
            frame.env[id(out)] = node
            node.meta["lead"] = out.shape[0] if out.dim() else None
        elif isinstance(out, tuple | list):
            for i, o in enumerate(out):
                if isinstance(o, Tensor):
                    frame.env[id(o)] = frame.graph.call_function(operator.getitem, (node, i))

    def _map(self, frame: _Frame, value: Any) -> Any:
        """``value`` with each tensor replaced by its node (a parameter or buffer of the
        frame's module by a get_attr, any other tensor by a constant)."""
        if isinstance(value, Tensor):
            if id(value) in frame.env:
                return frame.env[id(value)]
            path = self._names(frame).get(id(value))
            if path is None:
                path = f"_resdyn_constant{len(frame.constants)}"
                frame.constants[path] = value
            node = frame.graph.get_attr(path)
            frame.env[id(value)] = node
            return node
        if isinstance(value, torch.dtype | torch.device) and frame.x is not None and value in (
                frame.x.dtype, frame.x.device):
            # the input's dtype or device, read from the input when replayed (a float64 copy
            # on a GPU runs the same graph)
            what = "dtype" if isinstance(value, torch.dtype) else "device"
            node = next(iter(frame.graph.nodes))
            return frame.graph.call_function(getattr, (node, what))
        if isinstance(value, tuple):
            return tuple(self._map(frame, v) for v in value)
        if isinstance(value, list):
            return [self._map(frame, v) for v in value]
        if isinstance(value, dict):
            return {k: self._map(frame, v) for k, v in value.items()}
        return value

    def _names(self, frame: _Frame) -> dict[int, str]:
        if not frame.names:
            m = frame.module
            frame.names = {id(t): n for n, t in [*m.named_parameters(), *m.named_buffers()]}
            frame.names.update({id(c): n for n, c in m.named_modules() if n})
        return frame.names

    def call(self, original: Callable, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """A module call: record it as one node of its caller's graph, and its own forward
        into a graph of its own (the first call of each module)."""
        first = id(module) not in self.done and not any(f.module is module for f in self.stack)
        frame = _Frame(module)
        if not first:
            frame.fail("called again")
        elif not args or not isinstance(args[0], Tensor):
            frame.fail("its first argument is not a tensor")
        else:
            frame.x = args[0]
            frame.env[id(args[0])] = frame.graph.placeholder("x")
            frame.env[id(args[0])].meta["lead"] = args[0].shape[0] if args[0].dim() else None
            # what else the caller passes (a mask, rotary embeddings, a flag) is replayed as
            # it was passed, unless the caller computed it from its own input: then the
            # module is a map of two inputs, not of x alone
            caller = self.stack[-1] if self.stack else None
            others = list(_tensors((args[1:], kwargs)))
            if caller is not None and any(_from_input(caller, t) for t in others):
                frame.fail("it takes a second tensor computed from its caller's input")
        self.stack.append(frame)
        try:
            out = original(module, *args, **kwargs)
        finally:
            self.stack.pop()
        self.keep += [args, kwargs, out]
        if first:
            self._finish(frame, out)
        if self.stack and self.stack[-1].valid:
            self._child(self.stack[-1], module, args, kwargs, out)
        return out

    def _finish(self, frame: _Frame, out: Any) -> None:
        if frame.valid and not (isinstance(out, Tensor) and id(out) in frame.env):
            frame.fail("its output is not one tensor computed from its input")
        if frame.valid:
            frame.graph.output(frame.env[id(out)])
            frame.y = out
        self.done[id(frame.module)] = Recording(frame.module, frame.graph if frame.valid else None,
                                                frame.constants, frame.x, frame.y, frame.why)

    def _child(self, frame: _Frame, module: nn.Module, args: tuple, kwargs: dict,
               out: Any) -> None:
        path = self._names(frame).get(id(module))
        if path is None:
            frame.fail(f"it calls a module outside it ({type(module).__name__})")
            return
        inputs = list(_tensors((args, kwargs)))
        if (isinstance(out, Tensor) and any(out is a for a in inputs)
                and not getattr(module, "inplace", False)):
            return  # an identity in eval (Identity, Dropout, DropPath): an alias
        node = frame.graph.call_module(path, *self._map(frame, (args, kwargs)))
        self._bind(frame, out, node)


def _from_input(frame: _Frame, t: Tensor) -> bool:
    """Whether ``t`` was computed in ``frame`` from the frame's input."""
    node = frame.env.get(id(t))
    todo, seen = [node] if node is not None else [], set()
    while todo:
        n = todo.pop()
        if n.op == "placeholder":
            return True
        if n not in seen and not _input_attribute(n):  # a dtype or device read off the input
            seen.add(n)
            todo += n.all_input_nodes
    return False


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _has_tensor(value: Any) -> bool:
    return next(_tensors(value), None) is not None


@contextmanager
def _recording(model: nn.Module) -> Iterator[_Recorder]:
    """Record while the block runs: module calls through ``nn.Module.__call__``, torch
    functions through the recorder's mode."""
    recorder = _Recorder(model)
    original = nn.Module.__call__

    def call(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return recorder.call(original, module, args, kwargs)

    nn.Module.__call__ = call  # type: ignore[method-assign]
    try:
        with recorder:
            yield recorder
    finally:
        nn.Module.__call__ = original  # type: ignore[method-assign]


# ---------------------------------------------------------------- steps from a graph

@dataclass(frozen=True)
class Step:
    """One residual step of a recorded graph: the nodes (by name) where it starts, its
    shortcut term, its branch terms, and where its activation chain ends."""

    start: str
    shortcut: str
    branches: tuple[str, ...]
    add: str
    end: str
    name: str
    projection: bool = False  # the shortcut holds parameters (a learned map)
    fork: str = ""  # where the stream splits into shortcut and branches (after a shared prefix)


def find_steps(graph: fx.Graph, weight: Callable[[fx.Node], int] = lambda n: 1,
               ) -> tuple[list[Step], int, str]:
    """The residual steps of a module's graph, the additions seen, and why the graph is not
    a chain of steps (empty when it is).

    Args:
        weight: the size of a node (its operations and parameters), to tell a projection
            shortcut (the smallest term) from the branches.

    Returns:
        (steps, number of additions of two computed tensors, reason).
    """
    nodes = list(graph.nodes)
    x = next(n for n in nodes if n.op == "placeholder")
    out = next(n for n in nodes if n.op == "output").args[0]
    anc: dict[fx.Node, set[fx.Node]] = {}
    for n in nodes:
        # reading the input's dtype or device is no dependence on its values
        anc[n] = set().union(*([{a} | anc[a] for a in n.all_input_nodes
                                if not _input_attribute(a)]))
    live = {n for n in nodes if n is x or x in anc[n]}  # what depends on the input
    adds = [n for n in nodes if n.op == "call_function" and n.target in ADDS
            and sum(isinstance(a, fx.Node) and a in live for a in n.args[:2]) == 2]
    steps: list[Step] = []
    parallel = 0  # sums of parallel branches alike (re-parameterisable), not x + f(x)
    # the stream may pass a chain of the input alone before its first step (a window partition,
    # a reshape to tokens): that chain is the first step's shortcut and starts its branch
    base, cur = x, _chain_end(x, live, out) if adds else x
    for a in adds:
        if a not in live or cur not in anc[a] or (steps and anc[a].isdisjoint({cur})):
            continue
        if len(a.users) == 1 and next(iter(a.users)) in adds:
            continue  # a partial sum: the sum it is a term of is the step (a + b + c)
        terms = _terms(a, live)
        if any(t is not cur and cur not in anc[t] for t in terms):
            continue  # a term that does not come from the step's input
        if any(n in live and n is not cur and n not in anc[cur] and cur not in anc[n]
               for n in anc[a]):
            continue  # the input reaches this sum around the step's start
        shortcut = _shortcut(terms, cur, anc, weight)
        if shortcut is None:
            parallel += 1
            continue
        branches = tuple(t for t in terms if t is not shortcut)
        end = _chain_end(a, live, out)
        if end is not out and _reshapes(a, end):
            end = a  # a reshape between two steps starts the next one: each step keeps its shape
        path = (anc[shortcut] | {shortcut}) - anc[base] - {base}
        steps.append(Step(base.name, shortcut.name, tuple(b.name for b in branches), a.name,
                          end.name, _step_name(branches, cur, anc),
                          any(n.op in ("call_module", "get_attr") for n in path), cur.name))
        base, cur = end, _chain_end(end, live, out)
    if not adds:
        return [], 0, "no addition of two tensors computed from the input"
    if not steps and parallel:
        return [], len(adds), ("a sum of parallel paths of one size (re-parameterisable "
                               "branches, a fusion), none of them the input or a smaller map of "
                               "it: not x + f(x)")
    if not steps:
        return [], len(adds), "no addition is x + f(x) of the module's input"
    if base is not out:
        return [], len(adds), "the output is not the last step's (more is computed after it)"
    return steps, len(adds), ""


#: Operations that only rearrange a tensor's elements.
RESHAPES = {"reshape", "view", "flatten", "unflatten", "permute", "transpose", "contiguous",
            "squeeze", "unsqueeze", "swapaxes", "swapdims", "movedim", "moveaxis"}


def _reshapes(a: fx.Node, end: fx.Node) -> bool:
    """Whether the chain from ``a`` to ``end`` only rearranges elements."""
    chain = _chain_nodes(a, end)
    return chain is not None and all(
        m.op == "call_function" and getattr(m.target, "__name__", "") in RESHAPES
        for m in chain)


def _chain_nodes(a: fx.Node, end: fx.Node) -> list[fx.Node] | None:
    """The nodes after ``a`` up to ``end`` along the chain that follows ``a``."""
    out, n = [], a
    while n is not end:
        users = list(n.users)
        if len(users) != 1:
            return None
        n = users[0]
        out.append(n)
    return out


def _terms(a: fx.Node, live: set[fx.Node]) -> list[fx.Node]:
    """The terms of a sum: nested additions that feed only this one are opened."""
    out = []
    for t in a.args[:2]:
        if (isinstance(t, fx.Node) and t.op == "call_function" and t.target in ADDS
                and len(t.users) == 1 and all(isinstance(s, fx.Node) and s in live
                                              for s in t.args[:2])):
            out += _terms(t, live)
        elif isinstance(t, fx.Node):
            out.append(t)
    return out


def _shortcut(terms: list[fx.Node], cur: fx.Node, anc: dict,
              weight: Callable[[fx.Node], int]) -> fx.Node | None:
    """The term that is the step's input, else the one computed from it along a path no other
    term enters (the smallest such, a projection); None when there is none."""
    if cur in terms:
        return cur
    size = {t: sum(map(weight, (anc[t] | {t}) - anc[cur] - {cur})) for t in terms}
    apart = [t for t in terms
             if all(t not in anc[o] and o not in anc[t] and not (anc[t] & anc[o]) - anc[cur] - {cur}
                    for o in terms if o is not t)]
    # a projection is smaller than every branch (a 1x1 conv beside conv-norm-act-conv-norm);
    # parallel branches of one operation each (RepVGG) have no shortcut
    small = [t for t in apart if all(size[t] < size[o] for o in terms if o is not t)]
    return small[0] if small else None


def _chain_end(a: fx.Node, live: set[fx.Node], out: fx.Node) -> fx.Node:
    """The last node of the chain that follows the sum alone (the step's activation)."""
    n = a
    while n is not out:
        users = [u for u in n.users if u.op != "output"]
        if len(n.users) != 1 or len(users) != 1:
            break
        u = users[0]
        if sum(isinstance(v, fx.Node) and v in live for v in u.all_input_nodes) != 1:
            break
        n = u
    return n


def _step_name(branches: tuple[fx.Node, ...], cur: fx.Node, anc: dict) -> str:
    """The child module at the core of the branch: the first call_module of the branch that is
    not a norm, else the first one."""
    calls = [n for b in branches for n in sorted((anc[b] | {b}) - anc[cur] - {cur}, key=_order)
             if n.op == "call_module"]
    core = [c for c in calls if "norm" not in str(c.target).lower() and not
            str(c.target).split(".")[0].startswith(("ln", "bn"))]
    pick = (core or calls)
    return str(pick[0].target).split(".")[0] if pick else ""


def _order(n: fx.Node) -> int:
    i, m = 0, n
    while m.prev is not m and m.prev.op != "root":
        m, i = m.prev, i + 1
    return i


# ---------------------------------------------------------------- parts bound to a module

def _subgraph(graph: fx.Graph, start: str, end: str) -> fx.Graph:
    """The nodes computing ``end`` from ``start`` (and constants) as a graph of one input."""
    by = {n.name: n for n in graph.nodes}
    s, e = by[start], by[end]
    need: set[fx.Node] = set()
    todo = [e]
    while todo:
        n = todo.pop()
        if n in need or n is s:
            continue
        need.add(n)
        if not _input_attribute(n):
            todo += n.all_input_nodes
    sub = fx.Graph()
    x = sub.placeholder("x")
    env = {s: x}
    for n in graph.nodes:
        if n in need:
            if n.op == "placeholder":
                raise ValueError(f"{end} depends on the input around {start}")
            env[n] = (sub.call_function(getattr, (x, n.args[1])) if _input_attribute(n)
                      else sub.node_copy(n, lambda m: env[m]))
    sub.output(env[e])
    return sub


def _input_attribute(n: fx.Node) -> bool:
    """A node reading the module input's dtype or device (the same for every step's input)."""
    return (n.op == "call_function" and n.target is getattr
            and n.args[0].op == "placeholder")  # type: ignore[union-attr]


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
                root[t] = _get(module, t)
    return fx.GraphModule(root, graph)


def _get(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


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
            fn = _bound(_subgraph(self.graph, start, end), module, self.constants)
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
    with _recording(model) as rec:
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
                target = _get(module, str(n.target))
            except AttributeError:
                return 1
            if isinstance(target, nn.Module):
                return 1 + sum(p.numel() for p in target.parameters())
            if isinstance(target, Tensor):
                return 1 + target.numel()
        return 1

    return weight


#: Torch functions and methods that are affine in their one computed operand (a projection
#: shortcut and a branch made of these only are one affine map, re-parameterisable).
AFFINE = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "linear",
          "batch_norm", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
          "adaptive_avg_pool2d", "adaptive_avg_pool3d", "pad", "dropout", "dropout1d",
          "dropout2d", "reshape", "view", "permute", "transpose", "flatten", "unflatten",
          "contiguous", "__getitem__", "getitem", "squeeze", "unsqueeze", "expand", "chunk",
          "split", "narrow", "roll", "cat", "stack", "__add__", "__radd__", "add", "__sub__",
          "__rsub__", "sub", "__neg__", "neg", "sum", "mean", "getattr", "size", "clone",
          "swapaxes", "swapdims", "movedim", "moveaxis", "t", "repeat", "tile", "expand_as",
          "view_as", "reshape_as", "flip", "type_as", "float", "double", "to", "unbind",
          "select", "index_select", "pixel_shuffle", "pixel_unshuffle", "interpolate",
          "identity", "__get__"}
#: ... and those affine when at most one operand is computed (a scale, a matrix product by a
#: weight), nonlinear when two are (a gate, attention scores).
PRODUCTS = {"__mul__", "__rmul__", "mul", "__truediv__", "div", "matmul", "__matmul__", "bmm",
            "einsum"}


#: Nonlinear but allowed in a shortcut: a max pooling of a projection (Hiera's stage change).
POOLS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d",
                   "adaptive_max_pool2d", "adaptive_max_pool3d", "max", "amax"})


def _nonlinear(graph: fx.Graph, start: str, end: str, module: nn.Module,
               done: dict[int, Recording], allowed: frozenset[str] = frozenset()) -> bool:
    """Whether the part of ``graph`` from ``start`` to ``end`` computes anything nonlinear
    (looking into the recorded graphs of the child modules it calls; an unrecorded child
    counts as nonlinear)."""
    sub = _subgraph(graph, start, end)
    live = {next(iter(sub.nodes))}
    for n in sub.nodes:
        inputs = [a for a in n.all_input_nodes if a in live]
        if not inputs:
            continue
        live.add(n)
        if n.op == "call_function":
            name = getattr(n.target, "__name__", str(n.target))
            if name in PRODUCTS and len(inputs) <= 1:
                continue
            if name not in AFFINE and name not in allowed:
                return True
        elif n.op == "call_module":
            child = _get(module, str(n.target))
            g = done[id(child)].graph if id(child) in done else None
            if g is None:
                return True
            out = next(m for m in g.nodes if m.op == "output").args[0]
            x = next(m for m in g.nodes if m.op == "placeholder")
            if out is not x and _nonlinear(g, x.name, out.name,  # type: ignore[union-attr]
                                           child, done, allowed):
                return True
    return False


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
            if _nonlinear(recipe.graph, fork, step.shortcut, r.module, done, POOLS):
                return False, ("its sum adds nonlinear parallel paths (a fusion), none of them "
                               "the input or an affine map of it: not x + f(x)")
            if not any(_nonlinear(recipe.graph, fork, b, r.module, done)
                       for b in step.branches):
                return False, ("its sum is of parallel affine branches (re-parameterisable, "
                               "as RepVGG's), one affine map, not x + f(x) of a nonlinear f")
        return True, ""
    err = (y - r.y).abs().max().item() if y.shape == r.y.shape else "another shape"
    return False, f"its steps do not reproduce its output (largest difference {err})"

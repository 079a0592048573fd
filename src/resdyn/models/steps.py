"""Residual steps in a module's recorded graph: the additions x + f(x) of its input, their
shortcut, branches and activation, and whether a path of the graph is affine.

See :mod:`resdyn.models.discover` for the rules and why.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from .recording import Recording, input_attribute

ADDS = {operator.add, torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__}


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
                                if not input_attribute(a)]))
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
    """The node's place in its graph."""
    return list(n.graph.nodes).index(n)



def subgraph(graph: fx.Graph, start: str, end: str) -> fx.Graph:
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
        if not input_attribute(n):
            todo += n.all_input_nodes
    sub = fx.Graph()
    x = sub.placeholder("x")
    env = {s: x}
    for n in graph.nodes:
        if n in need:
            if n.op == "placeholder":
                raise ValueError(f"{end} depends on the input around {start}")
            env[n] = (sub.call_function(getattr, (x, n.args[1])) if input_attribute(n)
                      else sub.node_copy(n, lambda m: env[m]))
    sub.output(env[e])
    return sub



def get_path(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module



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


def nonlinear(graph: fx.Graph, start: str, end: str, module: nn.Module,
               done: dict[int, Recording], allowed: frozenset[str] = frozenset()) -> bool:
    """Whether the part of ``graph`` from ``start`` to ``end`` computes anything nonlinear
    (looking into the recorded graphs of the child modules it calls; an unrecorded child
    counts as nonlinear)."""
    sub = subgraph(graph, start, end)
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
            child = get_path(module, str(n.target))
            g = done[id(child)].graph if id(child) in done else None
            if g is None:
                return True
            out = next(m for m in g.nodes if m.op == "output").args[0]
            x = next(m for m in g.nodes if m.op == "placeholder")
            if out is not x and nonlinear(g, x.name, out.name,  # type: ignore[union-attr]
                                           child, done, allowed):
                return True
    return False



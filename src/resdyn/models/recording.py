"""The recording of a forward pass: every module call's own forward as a :class:`torch.fx.Graph`.

See :mod:`resdyn.models.discover`, which finds residual steps in these graphs.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.overrides import TorchFunctionMode

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
        if n not in seen and not input_attribute(n):  # a dtype or device read off the input
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
def recording(model: nn.Module) -> Iterator[_Recorder]:
    """Record while the block runs: module calls through ``nn.Module.__call__``, torch
    functions through the recorder's mode."""
    recorder = _Recorder(model)
    original = nn.Module.__call__
    here = threading.get_ident()  # torch function modes are per thread; the patch is not

    def call(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != here:  # another thread's model: not recorded
            return original(module, *args, **kwargs)
        return recorder.call(original, module, args, kwargs)

    nn.Module.__call__ = call  # type: ignore[method-assign]
    try:
        with recorder:
            yield recorder
    finally:
        nn.Module.__call__ = original  # type: ignore[method-assign]


def input_attribute(n: fx.Node) -> bool:
    """A node reading the module input's dtype or device (the same for every step's input)."""
    return (n.op == "call_function" and n.target is getattr
            and n.args[0].op == "placeholder")  # type: ignore[union-attr]



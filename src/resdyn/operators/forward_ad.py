"""Forward-mode products (JVPs) without torch's warm-up noise, and the warm-up itself."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

from torch import Tensor
from torch.func import jvp as _torch_jvp


@functools.cache
def warm_up_jvp() -> None:
    """Load torch's forward-AD decompositions now, once per process and quietly.

    torch registers them through ``torch.jit.script`` on the first JVP of a process, which
    raises a FutureWarning about torch's own internals that a user can do nothing about, and
    parses source code (``ast``) while it does. Every product of resdyn's operators warms up
    first; a process that runs JVPs in several threads (a Dask worker) calls it before any task,
    so that the parsing cannot meet another thread's (CPython before 3.11.8 then raises "AST
    constructor recursion depth mismatch", gh-106905). Later calls do nothing.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error")  # no FutureWarning of torch's escapes
        ...     warm_up_jvp()
        >>> warm_up_jvp()  # once is enough: this one does nothing
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch._decomp import decompositions_for_jvp  # noqa: F401


def jvp(fn: Callable[[Tensor], Tensor], primals: tuple[Tensor, ...],
        tangents: tuple[Tensor, ...]):
    """torch.func.jvp (forward-mode product), without torch's internal deprecation warning.

    Example:
        >>> import torch
        >>> jvp(lambda x: 2 * x, (torch.ones(2),), (torch.ones(2),))[1]
        tensor([2., 2.])
    """
    warm_up_jvp()
    return _torch_jvp(fn, primals, tangents)

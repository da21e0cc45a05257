"""Values derived from tensors, kept while those tensors are the same objects, unchanged.

A fit asks the same derived constants of its face model every step (a mesh's incidence, the
landmark contour table): :class:`TensorMemo` makes each once and serves it again as long as
the tensors it came from are the same objects with the same version counters (an in-place
edit bumps the counter, so the value is made again).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

__all__ = ["TensorMemo"]


class TensorMemo:
    """The last ``size`` values made from tensors (see the module docstring); thread-safe."""

    def __init__(self, size: int = 8):
        self.size = size
        self._kept: OrderedDict[tuple, tuple[tuple[weakref.ref, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tensors: tuple[torch.Tensor, ...], make: Callable[[], T], *extra: Hashable) -> T:
        """``make()``'s value for ``tensors`` (and the hashable ``extra`` it also depends on),
        made now or served again."""
        key = (*((id(t), t._version) for t in tensors), *extra)
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None and all(r() is t for r, t in zip(hit[0], tensors, strict=True)):
                self._kept.move_to_end(key)
                return hit[1]
        value = make()
        with self._lock:
            self._kept[key] = (tuple(weakref.ref(t) for t in tensors), value)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return value

"""Router taps: one forward's top-k ids of every MoE layer, written into the routing buffer in one go.

The usual capture (vLLM's capturer, FastDeploy's, and ``examples/python/routing_hooks.py``) copies each layer's ids
into the routing buffer inside that layer's router hook, ``routing[:n, layer, :].copy_(ids)``: one kernel per MoE
layer per step, 48 for Qwen3-30B-A3B, each a launch on the CPU and a few microseconds on the GPU. A
:class:`RouterTap`'s hook launches nothing: it keeps a reference to the layer's ids tensor. :meth:`RouterTap.write`,
called once after the forward, lays all layers into ``routing[:n]`` with one stack: one kernel on CUDA when the
buffer has the ids' dtype (the router's int64), two when it has another (a stack into a temporary, then a cast
copy). Holding the references keeps the ids' memory from being reused before the write, in eager mode and inside a
CUDA graph capture alike; in a graph, call :meth:`RouterTap.write` before the capture ends, so the stack is recorded
in the graph (its temporary comes from the graph's pool) and reads the ids of each replay.

Works with PyTorch tensors (any device) and with numpy arrays (the host backend); this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from r3.engine import _describe as _describe_tensor
from r3.engine import _dtype_name

__all__ = ["RouterTap"]


def _is_numpy(x: Any) -> bool:
    return type(x).__module__ == "numpy" and type(x).__name__ == "ndarray"


def _describe(x: Any) -> str:
    """The engine module's description, with numpy arrays named as such (a numpy buffer and CPU tensors mix)."""
    if _is_numpy(x):
        return "numpy " + _describe_tensor(x).removesuffix(" on cpu")
    return _describe_tensor(x)


def _int_dtype(x: Any) -> bool:
    return _dtype_name(getattr(x, "dtype", "")) in ("int32", "int64")


class RouterTap:
    """Holds each MoE layer's top-k ids of one forward by reference and writes them into a routing buffer at once.

    Use: :meth:`attach` a forward hook to every router (or call :meth:`record` from your own hook), run the forward,
    then :meth:`write` the ids into the ``[max_tokens, layers, top_k]`` buffer that ``RoutingCapture.begin_step``
    handed out, before ``end_step``. Every layer must be recorded exactly once between two writes; the tap checks
    it. A forward that fails leaves what it recorded: :meth:`discard` it before the next one. Not thread-safe: one
    tap per forward at a time.
    """

    def __init__(self, layers: int, top_k: int) -> None:
        """A tap for ``layers`` MoE layers of ``top_k`` experts each; ``ValueError`` if either is below 1."""
        for name, value in (("layers", layers), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self._layers = layers
        self._top_k = top_k
        self._ids: list[Any] = [None] * layers
        self._first: Any = None  # the first ids recorded in this forward: every later layer must match them

    @property
    def layers(self) -> int:
        """The number of MoE layers a forward records."""
        return self._layers

    @property
    def top_k(self) -> int:
        """The experts per token each layer records."""
        return self._top_k

    @property
    def recorded(self) -> int:
        """How many layers this forward has recorded so far."""
        return sum(x is not None for x in self._ids)

    def record(self, layer: int, topk_ids: Any) -> None:
        """Keeps a reference to MoE layer ``layer``'s ``[tokens, top_k]`` int32/int64 ids; copies nothing.

        ``ValueError`` when the layer is outside ``0..layers-1`` or already recorded since the last write, when the
        ids are not an int32/int64 ``[tokens, top_k]`` tensor or array, or when their token count, dtype or device
        differ from the layers recorded before. Nothing is kept on error.
        """
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self._layers:
            raise ValueError(f"layer must be an int in [0, {self._layers}), got {layer!r}")
        if self._ids[layer] is not None:
            raise ValueError(f"MoE layer {layer} recorded twice in one forward (write or discard the last one first)")
        shape = tuple(getattr(topk_ids, "shape", ()))
        if not _int_dtype(topk_ids) or len(shape) != 2 or shape[1] != self._top_k:
            raise ValueError(f"MoE layer {layer}: expected int32 or int64 top-k ids of shape [tokens, {self._top_k}], "
                             f"got {_describe(topk_ids)}")
        first = self._first
        if first is not None and (shape[0] != first.shape[0] or topk_ids.dtype != first.dtype
                                  or getattr(topk_ids, "device", None) != getattr(first, "device", None)
                                  or _is_numpy(topk_ids) != _is_numpy(first)):
            raise ValueError(f"MoE layer {layer}: ids {_describe(topk_ids)} differ from the layers recorded before "
                             f"({_describe(first)}): one forward routes the same tokens in every layer")
        self._ids[layer] = topk_ids
        if first is None:
            self._first = topk_ids

    def hook(self, layer: int, output_index: int | None = 2) -> Callable[..., None]:
        """A forward hook (``module.register_forward_hook``) that records ``output[output_index]`` as ``layer``'s ids,
        or the whole output with ``output_index=None``. The default fits transformers 5.x's ``Qwen3MoeTopKRouter``,
        which returns ``(logits, scores, indices)``. The hook raises ``ValueError`` when ``output_index`` is given and
        the output is not a tuple or list that long."""
        def tap_hook(module: Any, args: Any, output: Any) -> None:
            if output_index is None:
                self.record(layer, output)
                return
            if not isinstance(output, (tuple, list)) or not -len(output) <= output_index < len(output):
                got = (f"a {type(output).__name__} of {len(output)}" if isinstance(output, (tuple, list))
                       else _describe(output))
                raise ValueError(f"MoE layer {layer}: output_index={output_index} needs a tuple or list output that "
                                 f"long, the router returned {got} (output_index=None records a bare tensor)")
            self.record(layer, output[output_index])
        return tap_hook

    def attach(self, routers: Sequence[Any], output_index: int | None = 2) -> list[Any]:
        """Registers :meth:`hook` on each router module, in layer order; returns the hook handles (``.remove()``).
        ``ValueError`` when the number of routers is not ``layers``."""
        if len(routers) != self._layers:
            raise ValueError(f"expected {self._layers} routers (one per MoE layer), got {len(routers)}")
        return [r.register_forward_hook(self.hook(i, output_index)) for i, r in enumerate(routers)]

    def write(self, routing: Any) -> int:
        """Writes the recorded ids into ``routing[:tokens]`` (``[max_tokens, layers, top_k]``, int32 or int64, on the
        ids' device) and forgets them; returns ``tokens``.

        On CUDA this is enqueued on the current stream (one stack kernel, plus a cast copy when the buffer's dtype is
        not the ids'); inside a CUDA graph capture it is recorded in the graph. A numpy buffer (the host backend's)
        takes numpy ids or CPU tensors. ``ValueError`` naming the layers not recorded, or what is wrong with the
        buffer; the recorded ids are kept on error.
        """
        missing = [i for i, x in enumerate(self._ids) if x is None]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise ValueError(f"MoE layers {shown} were not recorded in this forward ({self.recorded} of "
                             f"{self._layers} were): is a hook missing, or did the forward not run?")
        first = self._ids[0]
        n = int(first.shape[0])
        if _is_numpy(routing) and not _is_numpy(first) and str(getattr(first, "device", "")) == "cpu":
            import torch
            routing = torch.from_numpy(routing)  # the host backend's numpy buffer, a PyTorch model's CPU ids
        shape = tuple(getattr(routing, "shape", ()))
        if (not _int_dtype(routing) or len(shape) != 3 or shape[1:] != (self._layers, self._top_k)
                or _is_numpy(routing) != _is_numpy(first)
                or getattr(routing, "device", None) != getattr(first, "device", None)):
            where = " numpy" if _is_numpy(first) else f" on {getattr(first, 'device', None)}"
            raise ValueError(f"expected an int32 or int64 routing buffer of shape [max_tokens, {self._layers}, "
                             f"{self._top_k}]{where}, got {_describe(routing)}")
        if n > shape[0]:
            raise ValueError(f"the forward routed {n} tokens, the routing buffer holds {shape[0]} (max_tokens)")
        if _is_numpy(first):
            import numpy as np
            np.stack(self._ids, axis=1, out=routing[:n])  # casting "same_kind": int64 ids into int32 is allowed
        else:
            import torch
            if routing.dtype == first.dtype:
                torch.stack(self._ids, dim=1, out=routing[:n])  # one batched cat kernel: same dtype, contiguous
            else:
                # a cat into another dtype falls back to a copy per input: stack in the ids' dtype, then one cast
                routing[:n].copy_(torch.stack(self._ids, dim=1))
        self.discard()
        return n

    def discard(self) -> None:
        """Forgets the recorded ids without writing them (an aborted forward)."""
        self._ids = [None] * self._layers
        self._first = None

"""Router hooks: the place where the routing is captured, as in vLLM's capturer.

A forward hook on every ``Qwen3MoeTopKRouter`` (transformers 5.x: ``forward(hidden)`` returns ``(router_logits,
router_scores, router_indices)``, the indices int64 ``[tokens, top_k]`` in the flattened ``[batch * seq]`` token
order) writes the ids into the capture's routing buffer at that layer: ``routing[:n, layer, :] = indices``. The copy
is a plain ``Tensor.copy_`` (with the int64 -> int32 cast), so it is recorded into a CUDA graph when the forward is
captured: the buffer's address is then baked into the graph.

With ``tap`` set (an ``r3.tap.RouterTap``), the hooks copy nothing: they only hand each layer's ids to the tap, and
``finish()`` after the forward writes all layers into the target with one stack (one or two kernels instead of one
per layer; inside a CUDA graph capture too, where ``finish`` must run before the capture ends).

Independently of the buffer, ``record`` keeps a CPU copy of every layer's ids of the last forward (verification; it
synchronises, so never with a CUDA graph).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from r3.tap import RouterTap


def find_routers(model) -> list[torch.nn.Module]:
    """The top-k routers in layer order (one per MoE layer)."""
    routers = [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]
    if not routers:
        raise RuntimeError(f"no *TopKRouter module in {type(model).__name__}: this transformers version routes differently "
                           "(the hooks expect transformers 5.x's Qwen3MoeTopKRouter)")
    return routers


class RouterHooks:
    def __init__(self, model):
        self.routers = find_routers(model)
        self.layers = len(self.routers)
        self.top_k = self.routers[0].top_k
        self.num_experts = self.routers[0].num_experts
        self.target: torch.Tensor | None = None  # [max_tokens, layers, top_k]; None: capture off
        self.record: list | None = None          # per layer the last forward's ids on the CPU; None: off
        self.tap: RouterTap | None = None        # record by reference, finish() writes once
        self._checked = False
        self._handles = [r.register_forward_hook(self._hook(i)) for i, r in enumerate(self.routers)]

    def _hook(self, layer: int):
        def hook(module, args, output):
            if not self._checked:
                self._check(output)
            indices = output[2]
            target = self.target
            if target is not None:
                n = indices.shape[0]
                if n > target.shape[0]:
                    raise ValueError(f"router of MoE layer {layer} routed {n} tokens, the routing buffer holds "
                                     f"{target.shape[0]} (max_tokens)")
                if self.tap is not None:
                    self.tap.record(layer, indices)
                else:
                    target[:n, layer, :].copy_(indices)
            if self.record is not None:
                self.record[layer] = indices.detach().to("cpu", copy=True)
        return hook

    def _check(self, output) -> None:
        if not (isinstance(output, tuple) and len(output) == 3 and output[2].dtype == torch.int64
                and output[2].dim() == 2 and output[2].shape[1] == self.top_k):
            desc = (f"tuple of {len(output)}: " + ", ".join(f"{getattr(o, 'dtype', type(o))} {list(getattr(o, 'shape', []))}"
                                                            for o in output)) if isinstance(output, tuple) else type(output)
            raise RuntimeError("expected the router to return (logits, scores, indices int64 [tokens, "
                               f"{self.top_k}]), got {desc}")
        self._checked = True

    def finish(self) -> None:
        """After the forward: with a tap and a target, writes every layer's recorded ids into the target at once."""
        if self.tap is not None and self.target is not None:
            self.tap.write(self.target)

    def discard(self) -> None:
        """After a failed forward: forgets what the tap recorded, so the next forward starts clean."""
        if self.tap is not None:
            self.tap.discard()

    def start_record(self) -> None:
        self.record = [None] * self.layers

    def take_record(self) -> torch.Tensor:
        """The last forward's ids as ``[tokens, layers, top_k]`` int64 (CPU)."""
        missing = [i for i, r in enumerate(self.record) if r is None]
        if missing:
            raise RuntimeError(f"router hooks of MoE layers {missing} did not fire in the forward")
        out = torch.stack(self.record, dim=1)
        self.record = [None] * self.layers
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

"""The replay session: :class:`RouterReplay` hooks every recognised router of a model, :func:`replay_routing` holds
it for a context, :func:`record_routing` and :func:`routing_mismatch` run a forward to read the routers' own choices."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from r3.replay.check import _check_rule, _int_attr, _unpack, _weight
from r3.replay.mismatch import RoutingMismatch, compare_routing
from r3.replay.routers import _Rule, _rule_for, moe_routers
from r3.replay.routing import MISSING, RoutingLike, _as_ids


@dataclass
class _Layer:
    name: str
    router: nn.Module
    rule: _Rule
    top_k: int
    num_experts: int
    ids: torch.Tensor | None = None  # [tokens, top_k] int64 on the router's device
    missing: torch.Tensor | None = None  # [tokens, 1] bool, where ids has -1 rows; None if it has none


def _validate(layers: list[_Layer], routing: RoutingLike) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Check routing against the model's routers; return per layer (ids on the router's device, missing rows)."""
    if isinstance(routing, torch.Tensor):
        routing = _as_ids(routing, "routing")
        if routing.dim() != 3:
            raise ValueError(
                f"router replay: expected routing of shape [tokens, {len(layers)}, {layers[0].top_k}] "
                f"(or one [tokens, top_k] per MoE layer), got {list(routing.shape)}"
            )
        per_layer = list(routing.unbind(1))
    else:
        per_layer = [_as_ids(ids, f"MoE layer {i}") for i, ids in enumerate(routing)]
    if len(per_layer) != len(layers):
        raise ValueError(f"router replay: the model has {len(layers)} MoE layers, the routing has {len(per_layer)}")
    tokens = per_layer[0].shape[0] if per_layer[0].dim() else 0
    stats = []
    for i, (layer, ids) in enumerate(zip(layers, per_layer, strict=True)):
        if ids.dim() != 2 or ids.shape[1] != layer.top_k or ids.shape[0] != tokens:
            raise ValueError(
                f"router replay: MoE layer {i} ({layer.name}): expected ids of shape [{tokens}, {layer.top_k}] "
                f"(top_k {layer.top_k}), got {list(ids.shape)}"
            )
        ids = ids.to(device=_weight(layer.router).device, dtype=torch.int64).contiguous()
        per_layer[i] = ids
        missing_entry = ids == MISSING
        any_missing, all_missing = missing_entry.any(dim=1), missing_entry.all(dim=1)
        ordered = ids.sort(dim=1).values
        duplicate = ((ordered[:, 1:] == ordered[:, :-1]) & ~any_missing[:, None]).any(dim=1)
        low, high = (ids.min(), ids.max()) if ids.numel() else (ids.new_tensor(0), ids.new_tensor(0))
        stats.append(torch.stack([low, high, (any_missing & ~all_missing).sum(), duplicate.sum(), all_missing.sum()]))
    device = stats[0].device
    summary = torch.stack([stat.to(device) for stat in stats]).tolist()  # one sync (per device), at set time only
    out = []
    for i, (layer, ids, stat) in enumerate(zip(layers, per_layer, summary, strict=True)):
        low, high, partial, duplicates, missing = stat
        where = f"router replay: MoE layer {i} ({layer.name})"
        if low < MISSING or high >= layer.num_experts:
            bad = ((ids < MISSING) | (ids >= layer.num_experts)).nonzero()[0].tolist()
            raise ValueError(
                f"{where}: expert id {ids[bad[0], bad[1]].item()} at token {bad[0]} is out of range "
                f"[0, {layer.num_experts}) (or -1 for no routing)"
            )
        if partial:
            raise ValueError(f"{where}: {partial} token rows mix -1 with expert ids; a row is all -1 or all ids")
        if duplicates:
            raise ValueError(f"{where}: {duplicates} token rows name the same expert twice")
        out.append((ids, (ids[:, :1] == MISSING) if missing else None))
    return out


_ACTIVE: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class RouterReplay:
    """Forward hooks that replay routing on every recognised router of a model; made by :func:`replay_routing`.

    Attributes:
        layers: number of MoE layers (recognised routers), in ``model.named_modules()`` order.
        names: the routers' qualified names.
        top_k, num_experts: per layer.
        live_topk: with ``record_live``, per layer the ids the router itself chose in the latest forward
            (``[tokens, top_k]`` int64, detached), else ``None`` entries.
    """

    def __init__(
        self,
        model: nn.Module,
        routing: RoutingLike | None,
        *,
        record_live: bool = False,
        check: bool = True,
    ) -> None:
        self._layers: list[_Layer] = []
        for name, router in moe_routers(model):
            rule = _rule_for(router)
            assert rule is not None
            if check:
                _check_rule(name, router, rule)
            self._layers.append(_Layer(name, router, rule, _int_attr(router, "top_k"), _int_attr(router, "num_experts")))
        self.record_live = record_live
        self.live_topk: list[torch.Tensor | None] = [None] * len(self._layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        if routing is not None:
            self.set_routing(routing)

    @property
    def layers(self) -> int:
        return len(self._layers)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    @property
    def top_k(self) -> list[int]:
        return [layer.top_k for layer in self._layers]

    @property
    def num_experts(self) -> list[int]:
        return [layer.num_experts for layer in self._layers]

    def set_routing(self, routing: RoutingLike) -> None:
        """Replay ``routing`` from the next forward on (e.g. the next micro-batch); validates it (one device sync)."""
        for layer, (ids, missing) in zip(self._layers, _validate(self._layers, routing), strict=True):
            layer.ids, layer.missing = ids, missing

    def mismatch(self) -> RoutingMismatch:
        """How the routers' own choices in the latest forward differ from the replayed routing (needs record_live)."""
        if not self.record_live or any(live is None for live in self.live_topk):
            raise RuntimeError("router replay: mismatch() needs record_live=True and a forward inside the context")
        device = self.live_topk[0].device  # type: ignore[union-attr]
        live = torch.stack([t.to(device) for t in self.live_topk], dim=1)  # type: ignore[union-attr]
        replayed = torch.stack([layer.ids.to(device) for layer in self._layers], dim=1)  # type: ignore[union-attr]
        return compare_routing(live, replayed)

    def _attach(self) -> None:
        for router in (layer.router for layer in self._layers):
            if router in _ACTIVE:
                raise RuntimeError("router replay: this model's routers are already replaying (nested replay_routing)")
        try:
            for index, layer in enumerate(self._layers):
                self._handles.append(layer.router.register_forward_hook(self._hook(index), prepend=True))
                _ACTIVE.add(layer.router)
        except BaseException:
            self._detach()
            raise

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self._layers:
            _ACTIVE.discard(layer.router)

    def _hook(self, index: int) -> Callable[[nn.Module, Any, Any], Any]:
        layer = self._layers[index]

        def hook(router: nn.Module, args: Any, output: Any) -> Any:
            logits, weights, live_ids = _unpack(layer.name, output)
            if self.record_live:
                self.live_topk[index] = live_ids.detach()
            if layer.ids is None:
                return None
            ids = layer.ids
            if ids.shape[0] != live_ids.shape[0]:
                raise ValueError(
                    f"router replay: MoE layer {index} ({layer.name}): expected routing for {live_ids.shape[0]} "
                    f"tokens (the forward's tokens), got {ids.shape[0]}"
                )
            if layer.missing is not None:
                ids = torch.where(layer.missing, live_ids, ids)
            replayed = layer.rule.weights(router, logits, ids, weights.dtype)
            if layer.missing is not None:
                replayed = torch.where(layer.missing, weights, replayed)
            return logits, replayed, ids.to(live_ids.dtype)

        return hook


@contextmanager
def replay_routing(
    model: nn.Module,
    routing: RoutingLike,
    *,
    record_live: bool = False,
    check: bool = True,
) -> Iterator[RouterReplay]:
    """Replay ``routing`` in every forward of ``model`` inside the context.

    Args:
        model: a transformers MoE model (or any module containing supported routers).
        routing: ``[tokens, layers, top_k]`` integer ids (see :func:`batch_routing`), or one ``[tokens, top_k]`` per
            MoE layer; tokens in ``hidden_states.view(-1, hidden)`` order; ``-1`` rows keep the router's own choice.
            Moved to each router's device once. :meth:`RouterReplay.set_routing` swaps it between forwards.
        record_live: keep the ids each router itself chose (``replay.live_topk``, :meth:`RouterReplay.mismatch`).
        check: verify once per router class that its code still matches the replay rule (see the module docstring).

    Raises:
        TypeError: the model has no supported router, or a router's code no longer matches its rule.
        ValueError: routing with the wrong number of layers, top_k, tokens, or an expert id out of range; a token
            count that does not match a forward raises from that forward.

    The hooks are removed on exit, also when the body raises. Run ``backward`` inside the context when gradient
    checkpointing recomputes the forward there.
    """
    replay = RouterReplay(model, routing, record_live=record_live, check=check)
    replay._attach()
    try:
        yield replay
    finally:
        replay._detach()



def record_routing(model: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Run ``model(*args, **kwargs)`` without grad; return the routers' own ids, ``[tokens, layers, top_k]`` int64."""
    replay = RouterReplay(model, None, record_live=True, check=False)
    replay._attach()
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        replay._detach()
    if any(live is None for live in replay.live_topk):
        missing = [name for name, live in zip(replay.names, replay.live_topk, strict=True) if live is None]
        raise RuntimeError(f"router replay: the forward did not call routers {', '.join(missing)}")
    device = replay.live_topk[0].device  # type: ignore[union-attr]
    return torch.stack([live.to(device) for live in replay.live_topk], dim=1)  # type: ignore[union-attr]


def routing_mismatch(model: nn.Module, routing: torch.Tensor, *args: Any, **kwargs: Any) -> RoutingMismatch:
    """Run ``model(*args, **kwargs)`` without replay and compare its own routing with the rollout ``routing``."""
    return compare_routing(record_routing(model, *args, **kwargs), routing)

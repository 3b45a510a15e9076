"""Router replay for Hugging Face transformers MoE models (R3, trainer side).

The rollout engine recorded, for every token, the ids of the experts each MoE layer routed it to. In the training
forward, :func:`replay_routing` makes every recognised router select exactly those ids instead of its own top-k,
while it still computes its logits and probabilities as the model does, so gradients flow through the router weights
(Megatron ``RouterReplay`` semantics)::

    routing = batch_routing(per_request_routing, attention_mask)   # [B*T, layers, top_k], -1 = no routing
    with replay_routing(model, routing, record_live=True) as replay:
        loss = loss_fn(model(input_ids, attention_mask=attention_mask).logits)
        loss.backward()            # inside the context if gradient checkpointing recomputes the forward
    print(replay.mismatch())       # how often the trainer's own routing would have differed

Semantics, per MoE layer ``l`` and token ``n`` of the forward (``hidden_states.view(-1, hidden)`` order, batch-major):

- the router runs unchanged (its logits, its probabilities, its own top-k); a forward hook then replaces the selected
  ids by ``routing[n, l]`` and the weights by the router's probabilities gathered at those ids and normalised exactly
  as the router normalises its own top-k (same dtypes, same epsilon, same scaling factor);
- a row of ``-1`` (no routing recorded: padding, the final token, a missing request) keeps the router's own ids and
  weights for that token, bit for bit (NeMo-RL style fallback);
- the router's outputs keep their tuple layout, shapes and dtypes, so the MoE block and the router-logits recorders
  work unchanged; the logits are the live logits (so transformers' auxiliary load-balancing loss, which takes its own
  top-k of the logits, still counts the live choices, not the replayed ones).

A "layer" is the n-th recognised router in ``model.named_modules()`` order, which for decoder-only models is the
engine's MoE layer order (dense layers have no router and no routing).

Routers recognised (by exact class name, defined in a ``transformers`` module; transformers 5.x), by rule:

- softmax in fp32 over all experts, gather, renormalise if ``norm_topk_prob``, cast to the router's score dtype:
  ``Qwen3MoeTopKRouter``, ``Qwen2MoeTopKRouter``, ``OlmoeTopKRouter``, ``FlexOlmoTopKRouter``,
  ``Qwen3NextTopKRouter``, ``Qwen3OmniMoeThinkerTextTopKRouter``, ``Qwen3OmniMoeTalkerTextTopKRouter``,
  ``MellumTopKRouter``, ``Qwen4ExpTextTopKRouter``;
- the same, always renormalised: ``MixtralTopKRouter``, ``MiniMaxTopKRouter``, ``Qwen3_5MoeTopKRouter``,
  ``Qwen3VLMoeTextTopKRouter``, ``Qwen3OmniMoeTextTopKRouter``;
- softmax in fp32, no renormalisation, times ``routed_scaling_factor``: ``DeepseekV2TopkRouter``,
  ``DeepseekOcr2TextTopkRouter``;
- sigmoid (DeepSeek-V3 style; the correction bias and the group limit only choose ids, so they do not enter the
  weights), gather, ``/ (sum + 1e-20)`` if ``norm_topk_prob``, times ``routed_scaling_factor``:
  ``DeepseekV3TopkRouter``, ``DeepseekV32TopkRouter``, ``Glm4MoeTopkRouter``, ``Glm4MoeLiteTopkRouter``,
  ``Glm4vMoeTextTopkRouter``, ``Glm5NextTextTopkRouter``, ``GlmMoeDsaTopkRouter``, ``Dots1TopkRouter``,
  ``ExaoneMoeTopkRouter``, ``KimiLinearTopkRouter``, ``MiMoV2FlashTopkRouter``, ``NemotronHTopkRouter``,
  ``SolarOpenTopkRouter``, ``HYV4TopkRouter``, ``AXK1TopkRouter``, ``AXK2TopkRouter``;
- softmax over the selected logits (gpt-oss): ``GptOssTopKRouter``.

Before the first replay, each (router class, dtype, settings) is checked once per process: the class's own forward
runs on random weights and inputs, and the rule applied at the ids it chose must give back its weights. A class whose
code no longer matches its rule is refused (``check=False`` skips this).

Not supported (refused when a model has no supported router): routers with another output layout or extra inputs
(Granite, Aria, Llama4, Phimoe, Ernie 4.5, Gemma4, MiniMax-M2, HunYuan, Laguna, Lfm2, Afmoe, DeepSeek-V4, ...).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

__all__ = [
    "RouterReplay",
    "RoutingMismatch",
    "batch_routing",
    "compare_routing",
    "moe_routers",
    "record_routing",
    "replay_routing",
    "routing_mismatch",
]

MISSING = -1
"""Expert id of a row with no recorded routing: the router's own choice is kept for that token and layer."""


@dataclass(frozen=True)
class _Rule:
    """How a router turns its logits into the weights of the selected experts."""

    score: str  # "softmax": fp32 softmax over all experts; "sigmoid"; "softmax_selected": softmax of the chosen logits
    normalise: str | bool  # the router attribute that says whether to renormalise, or a constant
    eps: float = 0.0  # added to the sum when renormalising
    scale: str | None = None  # the router attribute the weights are multiplied by

    def settings(self, router: nn.Module) -> tuple[Any, ...]:
        return (self._normalises(router), None if self.scale is None else float(getattr(router, self.scale)))

    def _normalises(self, router: nn.Module) -> bool:
        return bool(getattr(router, self.normalise)) if isinstance(self.normalise, str) else self.normalise

    def weights(self, router: nn.Module, logits: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The weights the router gives experts ``ids`` [tokens, top_k], computed from its logits as it does."""
        if self.score == "softmax":
            weights = torch.softmax(logits, dim=-1, dtype=torch.float32).gather(1, ids)
        elif self.score == "sigmoid":
            weights = logits.sigmoid().gather(1, ids)
        else:
            weights = torch.softmax(logits.gather(1, ids), dim=1, dtype=logits.dtype)
        if self._normalises(router):
            total = weights.sum(dim=-1, keepdim=True)
            weights = weights / (total + self.eps if self.eps else total)
        if self.scale is not None:
            weights = weights * getattr(router, self.scale)
        return weights.to(dtype)


_SOFTMAX_NORM_IF = _Rule("softmax", "norm_topk_prob")
_SOFTMAX_NORM = _Rule("softmax", True)
_SOFTMAX_SCALED = _Rule("softmax", False, scale="routed_scaling_factor")
_SIGMOID_DEEPSEEK = _Rule("sigmoid", "norm_topk_prob", eps=1e-20, scale="routed_scaling_factor")
_SOFTMAX_SELECTED = _Rule("softmax_selected", False)

_RULES: dict[str, _Rule] = {
    **dict.fromkeys(
        [
            "Qwen3MoeTopKRouter",
            "Qwen2MoeTopKRouter",
            "OlmoeTopKRouter",
            "FlexOlmoTopKRouter",
            "Qwen3NextTopKRouter",
            "Qwen3OmniMoeThinkerTextTopKRouter",
            "Qwen3OmniMoeTalkerTextTopKRouter",
            "MellumTopKRouter",
            "Qwen4ExpTextTopKRouter",
        ],
        _SOFTMAX_NORM_IF,
    ),
    **dict.fromkeys(
        [
            "MixtralTopKRouter",
            "MiniMaxTopKRouter",
            "Qwen3_5MoeTopKRouter",
            "Qwen3VLMoeTextTopKRouter",
            "Qwen3OmniMoeTextTopKRouter",
        ],
        _SOFTMAX_NORM,
    ),
    **dict.fromkeys(["DeepseekV2TopkRouter", "DeepseekOcr2TextTopkRouter"], _SOFTMAX_SCALED),
    **dict.fromkeys(
        [
            "DeepseekV3TopkRouter",
            "DeepseekV32TopkRouter",
            "Glm4MoeTopkRouter",
            "Glm4MoeLiteTopkRouter",
            "Glm4vMoeTextTopkRouter",
            "Glm5NextTextTopkRouter",
            "GlmMoeDsaTopkRouter",
            "Dots1TopkRouter",
            "ExaoneMoeTopkRouter",
            "KimiLinearTopkRouter",
            "MiMoV2FlashTopkRouter",
            "NemotronHTopkRouter",
            "SolarOpenTopkRouter",
            "HYV4TopkRouter",
            "AXK1TopkRouter",
            "AXK2TopkRouter",
        ],
        _SIGMOID_DEEPSEEK,
    ),
    "GptOssTopKRouter": _SOFTMAX_SELECTED,
}

SUPPORTED_ROUTERS: tuple[str, ...] = tuple(_RULES)
"""Class names of the routers that :func:`replay_routing` recognises."""


def _rule_for(module: nn.Module) -> _Rule | None:
    cls = type(module)
    if not cls.__module__.startswith("transformers."):
        return None
    return _RULES.get(cls.__name__)


def moe_routers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The recognised routers of ``model`` as ``(qualified name, module)``, in MoE layer order.

    Raises:
        TypeError: if the model has none; the message names router-like modules it has that are not supported.
    """
    routers = [(name, module) for name, module in model.named_modules() if _rule_for(module) is not None]
    if not routers:
        unsupported = sorted(
            {type(m).__name__ for m in model.modules() if "router" in type(m).__name__.lower()}
            | {type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Gate") and hasattr(m, "top_k")}
        )
        found = f"; it has {', '.join(unsupported)}, which router replay does not support" if unsupported else ""
        raise TypeError(
            f"router replay: {type(model).__name__} has no supported MoE router{found} "
            f"(supported: {', '.join(SUPPORTED_ROUTERS)})"
        )
    return routers


# --- the rule check --------------------------------------------------------------------------------------------------

_CHECKED: set[tuple[Any, ...]] = set()


def _weight(router: nn.Module) -> torch.Tensor:
    return cast(torch.Tensor, router.weight)


def _int_attr(router: nn.Module, name: str) -> int:
    return int(getattr(router, name))


def _check_rule(name: str, router: nn.Module, rule: _Rule) -> None:
    """Run the router class's own forward on random weights and inputs and check the rule gives back its weights."""
    weight = _weight(router)
    device = torch.device("cpu") if weight.device.type == "meta" else weight.device
    key = (type(router), weight.dtype, device.type, rule.settings(router))
    if key in _CHECKED:
        return
    generator = torch.Generator().manual_seed(0)  # the global RNG stays untouched

    def rand(shape: torch.Size, dtype: torch.dtype, std: float) -> torch.Tensor:
        return (torch.randn(tuple(shape), generator=generator) * std).to(device=device, dtype=dtype)

    probe = copy.copy(router)
    object.__setattr__(
        probe, "_parameters", {k: None if p is None else rand(p.shape, p.dtype, 0.5) for k, p in router._parameters.items()}
    )
    object.__setattr__(
        probe, "_buffers", {k: None if b is None else rand(b.shape, b.dtype, 0.01) for k, b in router._buffers.items()}
    )
    hidden = rand(torch.Size((16, weight.shape[1])), weight.dtype, 1.0)
    with torch.no_grad():
        try:
            output = type(router).forward(probe, hidden)
        except Exception as error:  # e.g. parameters sharded by FSDP, so no longer [experts, hidden]
            raise TypeError(
                f"router replay: could not check {type(router).__name__} ({name}) on a random input ({error}); "
                f"check=False skips this check"
            ) from error
        logits, weights, ids = _unpack(name, output)
        rebuilt = rule.weights(probe, logits, ids, weights.dtype)
    if rebuilt.dtype != weights.dtype or not torch.allclose(rebuilt.float(), weights.float(), rtol=1e-2, atol=1e-6):
        raise TypeError(
            f"router replay: {type(router).__name__} ({name}) no longer computes its weights as replay assumes "
            f"({rule}); this transformers version is not supported for it (check=False skips this check)"
        )
    _CHECKED.add(key)


def _unpack(name: str, output: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not (isinstance(output, tuple) and len(output) == 3):
        raise TypeError(
            f"router replay: router {name} returned {type(output).__name__}, expected (logits, weights, ids)"
        )
    logits, weights, ids = output
    if logits.dim() != 2 or ids.dim() != 2 or weights.shape != ids.shape:
        raise TypeError(
            f"router replay: router {name} returned logits {list(logits.shape)}, weights {list(weights.shape)}, "
            f"ids {list(ids.shape)}; expected [tokens, experts], [tokens, top_k], [tokens, top_k]"
        )
    return logits, weights, ids


# --- routing input ---------------------------------------------------------------------------------------------------

RoutingLike = torch.Tensor | Sequence[torch.Tensor]
"""Routing for one forward: ``[tokens, layers, top_k]``, or one ``[tokens, top_k]`` per MoE layer; integer ids."""


def _as_ids(value: Any, what: str) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"router replay: expected integer expert ids for {what}, got {tensor.dtype}")
    return tensor


def batch_routing(
    sequences: Sequence[Any],
    attention_mask: torch.Tensor,
    *,
    max_missing_tail: int = 1,
) -> torch.Tensor:
    """Lay per-request routing out in the flat token order of a padded batch's forward.

    Args:
        sequences: one ``[S_i, layers, top_k]`` integer array per batch row (numpy or torch, any integer dtype), the
            engine's routing of that row's tokens in order (prompt then output).
        attention_mask: ``[B, T]``, nonzero at real tokens. Any padding works (left, right, or both): the i-th
            routing row goes to the i-th real position of its batch row.
        max_missing_tail: how many of a row's last real tokens may lack routing (default 1: the final generated
            token was never forwarded by the engine); they get ``-1``.

    Returns:
        ``[B * T, layers, top_k]`` int64 on the mask's device, batch-major like ``hidden_states.view(-1, hidden)``,
        ``-1`` at padding and at the missing tail, so those tokens keep the trainer's own routing.
    """
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        shape = list(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
        raise ValueError(f"router replay: expected attention_mask of shape [batch, tokens], got {shape}")
    batch, tokens = attention_mask.shape
    if len(sequences) != batch:
        raise ValueError(f"router replay: expected {batch} routing arrays (one per batch row), got {len(sequences)}")
    arrays = [_as_ids(seq, f"sequence {i}") for i, seq in enumerate(sequences)]
    for i, array in enumerate(arrays):
        if array.dim() != 3 or array.shape[1:] != arrays[0].shape[1:]:
            expected = "[tokens, layers, top_k]" if i == 0 else f"[tokens, {arrays[0].shape[1]}, {arrays[0].shape[2]}]"
            raise ValueError(
                f"router replay: expected routing of sequence {i} of shape {expected}, got {list(array.shape)}"
            )
    layers, top_k = arrays[0].shape[1:] if arrays else (0, 0)
    out = torch.full((batch, tokens, layers, top_k), MISSING, dtype=torch.int64, device=attention_mask.device)
    real = attention_mask.detach().to("cpu") != 0
    for i, array in enumerate(arrays):
        positions = real[i].nonzero().squeeze(1)
        length, n_real = array.shape[0], positions.numel()
        if not n_real - max_missing_tail <= length <= n_real:
            raise ValueError(
                f"router replay: sequence {i} has routing for {length} tokens but {n_real} real tokens in the "
                f"attention mask (at most {max_missing_tail} final tokens may lack routing)"
            )
        out[i, positions[:length].to(out.device)] = array.to(device=out.device, dtype=torch.int64)
    return out.view(batch * tokens, layers, top_k)


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


# --- routing differences ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingMismatch:
    """How often live routing differs from rollout routing, as top-k sets; rows of -1 in the rollout are skipped.

    Attributes:
        layer_fraction: fraction of compared (token, layer) rows whose top-k sets differ.
        token_fraction: fraction of compared tokens with at least one differing layer.
        per_layer: ``layer_fraction`` of each MoE layer (nan where a layer has no compared row).
        rows: compared (token, layer) rows.
        tokens: compared tokens (with at least one recorded layer).
    """

    layer_fraction: float
    token_fraction: float
    per_layer: list[float]
    rows: int
    tokens: int


def compare_routing(live: torch.Tensor, rollout: torch.Tensor) -> RoutingMismatch:
    """Compare two ``[tokens, layers, top_k]`` routings as sets of experts per (token, layer)."""
    if live.shape != rollout.shape or live.dim() != 3:
        raise ValueError(
            f"router replay: expected live and rollout routing of the same shape [tokens, layers, top_k], "
            f"got {list(live.shape)} and {list(rollout.shape)}"
        )
    rollout = rollout.to(live.device)
    valid = (rollout != MISSING).all(dim=2)
    differ = (live.sort(dim=2).values != rollout.sort(dim=2).values).any(dim=2) & valid
    rows_per_layer = valid.sum(dim=0)
    per_layer = (differ.sum(dim=0) / rows_per_layer.clamp(min=1)).masked_fill(rows_per_layer == 0, float("nan"))
    token_valid = valid.any(dim=1)
    rows, tokens = int(valid.sum()), int(token_valid.sum())
    return RoutingMismatch(
        layer_fraction=int(differ.sum()) / rows if rows else float("nan"),
        token_fraction=int(differ.any(dim=1).sum()) / tokens if tokens else float("nan"),
        per_layer=per_layer.tolist(),
        rows=rows,
        tokens=tokens,
    )


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

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

from r3.replay.check import _CHECKED as _CHECKED
from r3.replay.check import _check_rule as _check_rule
from r3.replay.check import _int_attr as _int_attr
from r3.replay.check import _unpack as _unpack
from r3.replay.check import _weight as _weight
from r3.replay.mismatch import RoutingMismatch, compare_routing
from r3.replay.routers import _RULES as _RULES
from r3.replay.routers import _SIGMOID_DEEPSEEK as _SIGMOID_DEEPSEEK
from r3.replay.routers import _SOFTMAX_NORM as _SOFTMAX_NORM
from r3.replay.routers import _SOFTMAX_NORM_IF as _SOFTMAX_NORM_IF
from r3.replay.routers import _SOFTMAX_SCALED as _SOFTMAX_SCALED
from r3.replay.routers import _SOFTMAX_SELECTED as _SOFTMAX_SELECTED
from r3.replay.routers import SUPPORTED_ROUTERS as SUPPORTED_ROUTERS
from r3.replay.routers import _Rule as _Rule
from r3.replay.routers import _rule_for as _rule_for
from r3.replay.routers import moe_routers
from r3.replay.routing import MISSING as MISSING
from r3.replay.routing import RoutingLike as RoutingLike
from r3.replay.routing import _as_ids as _as_ids
from r3.replay.routing import batch_routing
from r3.replay.session import _ACTIVE as _ACTIVE
from r3.replay.session import RouterReplay, record_routing, replay_routing, routing_mismatch
from r3.replay.session import _Layer as _Layer
from r3.replay.session import _validate as _validate

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

"""The routers router replay recognises: per router class, the rule by which it turns its logits into the weights of
the experts it selects (see :mod:`r3.replay` for the families)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


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

"""Routing differences: :func:`compare_routing` counts how often live routing differs from rollout routing, as
top-k sets, in a :class:`RoutingMismatch`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r3.replay.routing import MISSING


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

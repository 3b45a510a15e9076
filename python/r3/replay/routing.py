"""Routing input: what one forward replays (:data:`RoutingLike`, :data:`MISSING` rows) and :func:`batch_routing`, which
lays per-request routing out in a padded batch's token order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

MISSING = -1
"""Expert id of a row with no recorded routing: the router's own choice is kept for that token and layer."""

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

"""The rule check: before the first replay, each (router class, dtype, settings) runs its own forward once on random
weights and inputs, and the rule applied at the ids it chose must give back its weights."""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from r3.replay.routers import _Rule

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

"""Argument checks of the engine side: step tensors, slot mappings, ranges, and slots from a block table; each
``ValueError`` names the tensor or argument and what was wrong with it."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

__all__ = ["slots_from_block_table"]

_INT_DTYPES = ("int32", "int64")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(x: Any) -> str:
    """``float16 [64, 48, 8] on cpu`` for a numpy array or a tensor; the type name for anything else."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        return type(x).__name__
    device = getattr(x, "device", None)
    where = "cpu" if device is None else str(device)
    return f"{_dtype_name(dtype)} [{', '.join(str(int(d)) for d in shape)}] on {where}"


def _check_step_tensors(topk_ids: Any, slot_mapping: Any, *, layers: int, top_k: int, max_tokens: int, device: str,
                        on_device: Any) -> int:
    """The token count of a step, after checking both tensors; ``ValueError`` naming the tensor and what was wrong."""
    shape = getattr(topk_ids, "shape", None)
    ok = (shape is not None and on_device(topk_ids) and _dtype_name(getattr(topk_ids, "dtype", "")) in _INT_DTYPES
          and len(shape) == 3 and tuple(int(d) for d in shape[1:]) == (layers, top_k))
    if not ok or shape is None:
        raise ValueError(f"expected int32 or int64 topk ids of shape [tokens, {layers}, {top_k}] on {device}, "
                         f"got {_describe(topk_ids)}")
    n = int(shape[0])
    if n > max_tokens:
        raise ValueError(f"expected int32 or int64 topk ids of shape [tokens, {layers}, {top_k}] with tokens <= "
                         f"max_tokens {max_tokens} on {device}, got {_describe(topk_ids)}")
    shape = getattr(slot_mapping, "shape", None)
    ok = (shape is not None and on_device(slot_mapping)
          and _dtype_name(getattr(slot_mapping, "dtype", "")) in _INT_DTYPES and tuple(int(d) for d in shape) == (n,))
    if not ok:
        raise ValueError(f"expected int32 or int64 slot mapping of shape [{n}] (one slot per token of the topk ids) "
                         f"on {device}, got {_describe(slot_mapping)}")
    return n


def _check_slot_mapping(slot_mapping: Any, n: int, *, device: str, accepted: Any) -> None:
    """``ValueError`` naming the slot mapping unless it is int32/int64 ``[n]`` and ``accepted`` takes its device."""
    shape = getattr(slot_mapping, "shape", None)
    ok = (shape is not None and accepted(slot_mapping)
          and _dtype_name(getattr(slot_mapping, "dtype", "")) in _INT_DTYPES and tuple(int(d) for d in shape) == (n,))
    if not ok:
        raise ValueError(f"expected int32 or int64 slot mapping of shape [{n}] (num_tokens) on {device} or the cpu, "
                         f"got {_describe(slot_mapping)}")


def slots_from_block_table(block_table: Sequence[int] | Any, block_size: int, seq_len: int) -> array[int]:
    """The KV-cache slots of positions ``0 .. seq_len-1``: ``block_table[pos // block_size] * block_size + pos % block_size``.

    ``block_table`` is a list, numpy array or CPU tensor of block ids. Returns an ``array('i')`` of ``seq_len`` slots.
    Raises ``ValueError`` when ``block_size`` is not positive, ``seq_len`` is negative or needs more blocks than the
    table has, or a slot falls outside int32.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if seq_len < 0:
        raise ValueError(f"seq_len must be 0 or more, got {seq_len}")
    blocks = block_table.tolist() if hasattr(block_table, "tolist") else list(block_table)
    needed = -(-seq_len // block_size)
    if needed > len(blocks):
        raise ValueError(f"block_table has {len(blocks)} blocks of {block_size} ({len(blocks) * block_size} positions), "
                         f"seq_len {seq_len} needs {needed}")
    slots = array("i")
    try:
        for i in range(needed):
            base = int(blocks[i]) * block_size
            if base < 0:
                raise ValueError(f"block_table[{i}] is {blocks[i]}, a block id is 0 or more")
            slots.extend(range(base, base + min(block_size, seq_len - i * block_size)))
    except OverflowError:
        raise ValueError(f"block_table[{i}] = {blocks[i]} gives slots outside int32 (block_size {block_size})") from None
    return slots


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = value.__index__()
        except AttributeError:
            raise ValueError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")

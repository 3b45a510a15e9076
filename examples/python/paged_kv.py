"""Paged KV bookkeeping of the reference engine: a block allocator with a free list, block tables, the slot mapping
``slot = block_table[pos // block_size] * block_size + pos % block_size``, and a paged K/V pool indexed by slot.

The slots are what the routing capture is keyed by (DESIGN.md), and the same slots hold the K/V of the model's
attention here, so a wrong slot mapping shows up both in the stored routing and in the attention.
"""
from __future__ import annotations

import torch

try:  # a Cache subclass passes any isinstance check of the model code; none of Cache's own state is used
    from transformers.cache_utils import Cache as _CacheBase
except ImportError:  # pragma: no cover - transformers without cache_utils
    _CacheBase = object

BLOCK_SIZE = 16


class OutOfBlocks(Exception):
    """The pool has fewer free blocks than a request needs; the scheduler preempts or skips."""


class BlockAllocator:
    """``num_blocks`` KV blocks of ``block_size`` slots. The free list is LIFO: a freed block is the next one handed
    out, so the blocks of a preempted or aborted request are reused by others at once (which is what makes a stale
    slot in the capture visible)."""

    def __init__(self, num_blocks: int, block_size: int = BLOCK_SIZE):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be positive, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        # pop() from the end: block 0 first on a fresh pool
        self._free = list(range(num_blocks - 1, -1, -1))
        self._owner: dict[int, str] = {}

    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    def blocks_needed(self, block_table: list[int], num_tokens: int) -> int:
        """How many more blocks a table needs to hold positions ``[0, num_tokens)``."""
        need = -(-num_tokens // self.block_size)
        return max(0, need - len(block_table))

    def ensure(self, owner: str, block_table: list[int], num_tokens: int) -> None:
        """Grows ``block_table`` in place to hold ``num_tokens`` positions; raises OutOfBlocks (allocating nothing)
        when the pool is short."""
        extra = self.blocks_needed(block_table, num_tokens)
        if extra > len(self._free):
            raise OutOfBlocks(f"{owner} needs {extra} blocks, {len(self._free)} free")
        for _ in range(extra):
            b = self._free.pop()
            self._owner[b] = owner
            block_table.append(b)

    def free(self, owner: str, block_table: list[int]) -> None:
        """Returns a table's blocks to the free list (last block first, so the first block is reused first) and
        empties the table."""
        for b in reversed(block_table):
            if self._owner.get(b) != owner:
                raise AssertionError(f"block {b} freed by {owner} but owned by {self._owner.get(b)}")
            del self._owner[b]
            self._free.append(b)
        block_table.clear()


def slot_of(block_table: list[int], pos: int, block_size: int = BLOCK_SIZE) -> int:
    """The KV slot of token position ``pos``."""
    return block_table[pos // block_size] * block_size + pos % block_size


def slots_of(block_table: list[int], start: int, end: int, block_size: int = BLOCK_SIZE) -> list[int]:
    """Slots of positions ``[start, end)`` in token order."""
    return [block_table[p // block_size] * block_size + p % block_size for p in range(start, end)]


class PagedKVPool:
    """Per layer a K and a V tensor ``[num_slots, kv_heads, head_dim]``: the K/V of token ``(request, pos)`` lives
    at its slot."""

    def __init__(self, layers: int, num_slots: int, kv_heads: int, head_dim: int, dtype, device):
        self.k = [torch.zeros(num_slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(num_slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(layers)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class PagedStepCache(_CacheBase):
    """One step's view of the pool, shaped like a Hugging Face cache for the attention modules: ``update(k, v,
    layer)`` with the step's new K/V ``[1, kv_heads, T, head_dim]`` (the flattened token order of the step) writes the
    rows of real tokens (slot >= 0) into the pool, then returns the K/V the step attends to, gathered by
    ``key_slots`` as ``[1, kv_heads, K, head_dim]``. The step's 4-D mask says which of those keys each token sees.

    Only ``update`` and ``get_seq_length`` are called with a 4-D mask and explicit position ids; it subclasses
    ``Cache`` for isinstance checks but never calls ``Cache.__init__``, so it does not depend on the Cache layout of
    one transformers version."""

    is_compileable = False

    def __init__(self, pool: PagedKVPool, write_index: torch.Tensor, write_slots: torch.Tensor,
                 key_slots: torch.Tensor):
        self.pool = pool
        self.write_index = write_index  # [R] token indices of real tokens in the step
        self.write_slots = write_slots  # [R] their slots
        self.key_slots = key_slots      # [K] slots to attend to, grouped per request, token order inside

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        kp, vp = self.pool.k[layer_idx], self.pool.v[layer_idx]
        # [1, H, T, D] -> [T, H, D] rows of the real tokens
        k_rows = key_states[0].transpose(0, 1).index_select(0, self.write_index)
        v_rows = value_states[0].transpose(0, 1).index_select(0, self.write_index)
        kp.index_copy_(0, self.write_slots, k_rows.to(kp.dtype))
        vp.index_copy_(0, self.write_slots, v_rows.to(vp.dtype))
        k = kp.index_select(0, self.key_slots).transpose(0, 1).unsqueeze(0)
        v = vp.index_select(0, self.key_slots).transpose(0, 1).unsqueeze(0)
        return k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:  # only used to derive positions we pass explicitly
        return 0

    # Cache's own versions read state this class does not have
    def __len__(self) -> int:
        return len(self.pool.k)

    def __bool__(self) -> bool:
        return True

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self.pool.k)

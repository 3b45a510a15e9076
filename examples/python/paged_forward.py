"""One engine step's forward over the paged KV pool, with the step's tokens packed flat (vLLM-style varlen): the
batch is ``[1, T]`` and token ``i`` of the flattened batch is token ``i`` of the slot mapping, so the router's
``[T, top_k]`` ids line up with ``slot_mapping[i]`` without any reordering. Padding tokens (slot -1) sit anywhere in
the order; they attend only to one key and their K/V are not written.

Two forwards over the same modules, both firing the router hooks:
- ``hf``: ``model.model(...)`` (Hugging Face's own decoder loop and attention) with a 4-D boolean mask, explicit
  position ids and a duck-typed paged cache (``PagedStepCache``);
- ``manual``: the same math written out over the model's submodules (a fallback if a transformers version treats
  the cache or the 4-D mask differently). The pytest checks that both give the logits of a plain HF forward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paged_kv import PagedKVPool, PagedStepCache


@dataclass
class StepBatch:
    input_ids: torch.Tensor     # [1, T]
    positions: torch.Tensor     # [1, T]
    mask: torch.Tensor          # [1, 1, T, K] bool, True = attend
    cache: PagedStepCache
    num_tokens: int


def build_step_batch(pool: PagedKVPool, tokens: list[tuple[int, int, int, int]],
                     keys: list[tuple[int, int, int]], device) -> StepBatch:
    """``tokens``: per flattened token ``(token_id, position, slot, owner)``, owner -1 for padding (slot -1);
    ``keys``: per key ``(slot, position, owner)``: every position ``[0, end)`` of every scheduled request."""
    T = len(tokens)
    ids = torch.tensor([t[0] for t in tokens], dtype=torch.long)
    pos = torch.tensor([t[1] for t in tokens], dtype=torch.long)
    slot = torch.tensor([t[2] for t in tokens], dtype=torch.long)
    owner = torch.tensor([t[3] for t in tokens], dtype=torch.long)
    key_slot = torch.tensor([k[0] for k in keys], dtype=torch.long)
    key_pos = torch.tensor([k[1] for k in keys], dtype=torch.long)
    key_owner = torch.tensor([k[2] for k in keys], dtype=torch.long)
    mask = (owner[:, None] == key_owner[None, :]) & (key_pos[None, :] <= pos[:, None]) & (owner[:, None] >= 0)
    pad = owner < 0
    mask[pad, 0] = True  # a padding row attends to one key (no empty softmax); its output is never used
    real = torch.nonzero(~pad).flatten()
    cache = PagedStepCache(pool, real.to(device), slot[real].to(device), key_slot.to(device))
    return StepBatch(ids[None].to(device), pos[None].to(device), mask[None, None].to(device), cache, T)


def forward_hf(model, batch: StepBatch) -> torch.Tensor:
    """Hugging Face's decoder loop; returns the final hidden states ``[T, hidden]``."""
    out = model.model(input_ids=batch.input_ids, position_ids=batch.positions, attention_mask=batch.mask,
                      past_key_values=batch.cache, use_cache=True)
    return out.last_hidden_state[0]


def rope_cos_sin(model, positions: torch.Tensor, dtype, inv_freq: torch.Tensor | None = None):
    """cos/sin of the model's rotary embedding at ``positions`` (any shape), shape ``positions.shape + [head_dim]``;
    the same arithmetic as ``Qwen3MoeRotaryEmbedding.forward`` (default rope type). ``inv_freq``: a float32 copy on
    the positions' device (the graph path passes one, so no copy happens inside a capture)."""
    rot = model.model.rotary_emb
    inv = inv_freq if inv_freq is not None else rot.inv_freq.to(device=positions.device, dtype=torch.float32)
    freqs = positions.to(torch.float32)[..., None] * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = getattr(rot, "attention_scaling", 1.0)
    return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _mlp(layer, x):
    out = layer.mlp(x)  # transformers 5.x: a tensor; 4.x returned (hidden, router_logits)
    return out[0] if isinstance(out, tuple) else out


def forward_manual(model, batch: StepBatch) -> torch.Tensor:
    """The same forward written over the model's submodules (the router hooks fire inside ``layer.mlp``)."""
    m = model.model
    h = m.embed_tokens(batch.input_ids)                      # [1, T, hidden]
    cos, sin = rope_cos_sin(model, batch.positions, h.dtype)  # [1, T, D]
    cos, sin = cos[:, None], sin[:, None]                     # [1, 1, T, D]
    T = batch.num_tokens
    for i, layer in enumerate(m.layers):
        attn = layer.self_attn
        D = attn.head_dim
        x = layer.input_layernorm(h)
        q = attn.q_norm(attn.q_proj(x).view(1, T, -1, D)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(x).view(1, T, -1, D)).transpose(1, 2)
        v = attn.v_proj(x).view(1, T, -1, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k_all, v_all = batch.cache.update(k, v, i)
        rep = attn.num_key_value_groups
        o = F.scaled_dot_product_attention(q, repeat_kv(k_all, rep), repeat_kv(v_all, rep), attn_mask=batch.mask,
                                           scale=attn.scaling)
        h = h + attn.o_proj(o.transpose(1, 2).reshape(1, T, -1))
        h = h + _mlp(layer, layer.post_attention_layernorm(h))
    return m.norm(h)[0]


FORWARDS = {"hf": forward_hf, "manual": forward_manual}

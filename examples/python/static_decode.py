"""A static-KV decode step over the Hugging Face model's modules, and its CUDA-graph capture (the benchmark's
decode path, as vLLM and SGLang run decode).

Why not transformers' ``StaticCache`` + ``model.forward`` in the graph: the HF forward builds its mask and cache
positions with Python logic that differs between 5.17 and 5.18 and may synchronise (``.item()``/``.all()`` checks)
inside the capture. Here every op has a static shape and reads only device tensors: per layer the HF modules'
projections and norms, RoPE, a ``scatter_`` of the new K/V at each sequence's position into a static cache
``[max_batch, kv_heads, context, head_dim]``, SDPA over the whole context with a ``key <= position`` mask, and
``layer.mlp`` (the HF ``Qwen3MoeSparseMoeBlock``, so the router hook fires; experts via transformers' ``grouped_mm``
path, which avoids host syncs: histc instead of bincount). GQA without expanding K/V: a decode query has length 1,
so the ``G`` query heads of a KV head are folded into the query-length axis: ``q [B, kv_heads, G, D]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from paged_forward import _mlp, rope_cos_sin, rotate_half

if TYPE_CHECKING:
    from r3.tap import RouterTap


class StaticDecoder:
    """Inputs ``ids[:B]``, ``pos[:B]`` (static device tensors: copy into them before a step); output: the greedy next
    token of each sequence. Sequence ``b`` owns row ``b`` of the static cache (positions ``[0, context)``)."""

    def __init__(self, model, max_batch: int, context: int, device, fill_random: bool = True):
        cfg = model.config
        self.model = model
        self.max_batch, self.context = max_batch, context
        self.kv_heads, self.head_dim = cfg.num_key_value_heads, cfg.head_dim
        self.q_heads = cfg.num_attention_heads
        self.group = self.q_heads // self.kv_heads
        dtype = model.dtype
        shape = (max_batch, self.kv_heads, context, self.head_dim)
        self.k, self.v = [], []
        for _ in range(cfg.num_hidden_layers):
            if fill_random:  # a context that looks used; its values do not matter for timing
                self.k.append(torch.randn(shape, dtype=dtype, device=device))
                self.v.append(torch.randn(shape, dtype=dtype, device=device))
            else:
                self.k.append(torch.zeros(shape, dtype=dtype, device=device))
                self.v.append(torch.zeros(shape, dtype=dtype, device=device))
        self.ids = torch.zeros(max_batch, dtype=torch.long, device=device)
        self.pos = torch.zeros(max_batch, dtype=torch.long, device=device)
        self.key_index = torch.arange(context, device=device)
        self.inv_freq = model.model.rotary_emb.inv_freq.to(device=device, dtype=torch.float32).clone()

    @property
    def kv_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def forward(self, B: int, return_logits: bool = False) -> torch.Tensor:
        """One decode step of sequences ``[0, B)``; returns next token ids ``[B]`` (or the logits ``[B, vocab]``).
        Graph-capturable."""
        m = self.model.model
        ids, pos = self.ids[:B], self.pos[:B]
        Hkv, G, D = self.kv_heads, self.group, self.head_dim
        h = m.embed_tokens(ids)[:, None, :]                          # [B, 1, hidden]
        cos, sin = rope_cos_sin(self.model, pos, h.dtype, self.inv_freq)  # [B, D]
        cos, sin = cos[:, None, :], sin[:, None, :]                   # [B, 1, D] over heads
        mask = (self.key_index[None, :] <= pos[:, None])[:, None, None, :]  # [B, 1, 1, ctx]
        kv_at = pos.view(B, 1, 1, 1).expand(B, Hkv, 1, D)
        for i, layer in enumerate(m.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_norm(attn.q_proj(x).view(B, self.q_heads, D))   # [B, Hq, D]
            k = attn.k_norm(attn.k_proj(x).view(B, Hkv, D))            # [B, Hkv, D]
            v = attn.v_proj(x).view(B, Hkv, D)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            kc, vc = self.k[i][:B], self.v[i][:B]
            kc.scatter_(2, kv_at, k.unsqueeze(2))
            vc.scatter_(2, kv_at, v.unsqueeze(2))
            o = F.scaled_dot_product_attention(q.view(B, Hkv, G, D), kc, vc, attn_mask=mask, scale=attn.scaling)
            h = h + attn.o_proj(o.reshape(B, 1, self.q_heads * D))
            h = h + _mlp(layer, layer.post_attention_layernorm(h))
        h = m.norm(h)
        logits = self.model.lm_head(h[:, 0])
        return logits if return_logits else logits.argmax(-1)


# ================================================================================================================
# CUDA graphs (GPU only; not runnable on a CPU: keep everything CUDA-specific below this line)
# ================================================================================================================


class DecodeGraphs:
    """One CUDA graph per (batch size, capture target): the router hooks' ``copy_`` into the target buffer is
    recorded in the graph, so each target address (no capture / the staging-side device buffer / each of the
    sidecar's IPC buffers) gets its own graph. All graphs share one memory pool; they are replayed one at a time on
    one stream and each step's output is read before the next replay, which is what makes sharing the pool safe.

    ``warmup(B)`` runs the eager step a few times on a side stream with the hooks pointed at a scratch buffer (never at
    an IPC buffer the sidecar may be reading), then ``capture(B, key, target)`` records the graph without running it.
    """

    def __init__(self, decoder: StaticDecoder, hooks, scratch: torch.Tensor):
        self.decoder, self.hooks, self.scratch = decoder, hooks, scratch
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple[int, object], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def warmup(self, B: int, iters: int = 3, tap: RouterTap | None = None) -> None:
        """``tap``: one more iteration through it, so what its first write makes (its scratch) is made outside a
        graph."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        saved = self.hooks.target, self.hooks.tap
        self.hooks.target = self.scratch
        try:
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(iters):
                    self.decoder.forward(B)
                if tap is not None:
                    self.hooks.tap = tap
                    self.decoder.forward(B)
                    self.hooks.finish()
        except BaseException:
            self.hooks.discard()
            raise
        finally:
            self.hooks.target, self.hooks.tap = saved
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()

    def capture(self, B: int, key, target: torch.Tensor | None, tap: RouterTap | None = None) -> None:
        """Records the step's graph for ``target``; with ``tap`` the hooks hand the ids to it and its one write into
        the target ends the graph (instead of one copy per layer)."""
        g = torch.cuda.CUDAGraph()
        saved = self.hooks.target, self.hooks.tap
        self.hooks.target, self.hooks.tap = target, tap
        try:
            # thread_local: a helper thread of the capture module (socket reader) may touch CUDA meanwhile
            with torch.no_grad(), torch.cuda.graph(g, pool=self.pool, capture_error_mode="thread_local"):
                out = self.decoder.forward(B)
                self.hooks.finish()
        except BaseException:
            self.hooks.discard()  # a failed capture must not leave half a forward in the tap
            raise
        finally:
            self.hooks.target, self.hooks.tap = saved
        self.graphs[(B, key)] = (g, out)

    def replay(self, B: int, key) -> torch.Tensor:
        g, out = self.graphs[(B, key)]
        g.replay()
        return out

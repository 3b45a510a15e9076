"""The model: Hugging Face ``Qwen3MoeForCausalLM`` with random weights and the real Qwen3-30B-A3B routing shape
(48 MoE layers, 128 experts, top 8; the full config fits one H100 in bf16), shrinkable
from the command line for CPU smoke runs and device-time limits."""
from __future__ import annotations

import argparse
import time

import torch

# Qwen3-30B-A3B (GPU.md: 30.5 B parameters, 61 GB in bf16, builds in 0.6 s on an H100)
REAL = dict(layers=48, experts=128, top_k=8, hidden=2048, moe_intermediate=768, intermediate=6144, heads=32,
            kv_heads=4, head_dim=128, vocab=151936)
# a CPU smoke shape: same structure, seconds on two cores
TINY = dict(layers=4, experts=16, top_k=4, hidden=64, moe_intermediate=32, intermediate=128, heads=4, kv_heads=2,
            head_dim=16, vocab=512)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (default: the real Qwen3-30B-A3B shape)")
    g.add_argument("--tiny", action="store_true", help="start from a tiny CPU smoke shape instead of the real one")
    for k, v in REAL.items():
        g.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"real: {v}")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                   help="auto: bfloat16 on cuda, float32 on cpu")
    g.add_argument("--experts-impl", default="grouped_mm",
                   help="transformers experts implementation (grouped_mm: no host sync, CUDA-graph safe)")


def shape_from_args(args) -> dict:
    base = dict(TINY if args.tiny else REAL)
    for k in REAL:
        v = getattr(args, k)
        if v is not None:
            base[k] = v
    return base


def describe_reduction(shape: dict) -> str:
    diffs = [f"{k}={shape[k]} (real {REAL[k]})" for k in REAL if shape[k] != REAL[k]]
    return "real Qwen3-30B-A3B shape" if not diffs else "REDUCED from Qwen3-30B-A3B: " + ", ".join(diffs)


def make_config(shape: dict):
    from transformers import Qwen3MoeConfig
    return Qwen3MoeConfig(num_hidden_layers=shape["layers"], num_experts=shape["experts"],
                          num_experts_per_tok=shape["top_k"], hidden_size=shape["hidden"],
                          moe_intermediate_size=shape["moe_intermediate"], intermediate_size=shape["intermediate"],
                          num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                          head_dim=shape["head_dim"], vocab_size=shape["vocab"], norm_topk_prob=True,
                          rms_norm_eps=1e-6, max_position_embeddings=40960, tie_word_embeddings=False,
                          decoder_sparse_step=1, mlp_only_layers=[])


def resolve_dtype(name: str, device: str):
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def build_model(shape: dict, device: str, dtype, seed: int, experts_impl: str = "grouped_mm", log=print):
    """Random weights (``torch.manual_seed(seed)``), built directly on ``device`` in ``dtype``; SDPA attention."""
    from transformers import Qwen3MoeForCausalLM
    cfg = make_config(shape)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            try:
                model = Qwen3MoeForCausalLM._from_config(cfg, attn_implementation="sdpa",
                                                         experts_implementation=experts_impl)
            except (TypeError, ValueError) as e:  # an older 5.x without the keyword: set it afterwards
                log(f"note: _from_config(experts_implementation=...) refused ({e}); setting it on the model")
                model = Qwen3MoeForCausalLM._from_config(cfg, attn_implementation="sdpa")
                if hasattr(model, "set_experts_implementation"):
                    model.set_experts_implementation(experts_impl)
    finally:
        torch.set_default_dtype(prev)
    model.eval()
    model.requires_grad_(False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {describe_reduction(shape)}; {n_params / 1e9:.3f} B parameters, {dtype}, {device}, "
        f"attn={model.config._attn_implementation}, experts={getattr(model.config, '_experts_implementation', '?')}, "
        f"built in {time.perf_counter() - t0:.2f} s")
    return model

"""Router replay (r3.replay) on a tiny random Qwen3-MoE model, on CPU.

``python/`` has no ``r3/__init__.py`` in this branch, so this file puts ``python/`` on ``sys.path`` and imports
``r3.replay`` as a namespace package. Without PyTorch or transformers the whole module is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="router replay needs PyTorch (not installed in plain CI)")
transformers = pytest.importorskip("transformers", reason="router replay tests need transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r3.replay import (  # noqa: E402
    batch_routing,
    compare_routing,
    SUPPORTED_ROUTERS,
    moe_routers,
    record_routing,
    replay_routing,
    routing_mismatch,
)
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM  # noqa: E402

LAYERS, EXPERTS, TOP_K, HIDDEN = 4, 8, 2, 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest, and stays fast on a loaded CI machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> Qwen3MoeForCausalLM:
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=128,
        hidden_size=HIDDEN,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=EXPERTS,
        num_experts_per_tok=TOP_K,
        norm_topk_prob=True,
        max_position_embeddings=64,
    )
    model = Qwen3MoeForCausalLM(config).eval()
    with torch.no_grad():  # routers with spread-out logits, so random routings differ clearly
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def input_ids() -> torch.Tensor:
    return torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(1))


def random_routing(tokens: int, seed: int = 2) -> torch.Tensor:
    """Distinct random expert ids per (token, layer): [tokens, LAYERS, TOP_K]."""
    scores = torch.rand(tokens, LAYERS, EXPERTS, generator=torch.Generator().manual_seed(seed))
    return scores.argsort(dim=-1)[..., :TOP_K]


def gates(model: Qwen3MoeForCausalLM) -> list[torch.nn.Module]:
    return [layer.mlp.gate for layer in model.model.layers]


class Capture:
    """Forward hooks that keep what modules received and returned (registered after replay, so they see its output)."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.inputs: list = [None] * len(modules)
        self.outputs: list = [None] * len(modules)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i: int):
        def hook(module, args, output):
            self.inputs[i], self.outputs[i] = args, output

        return hook

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


def impostor(choose):
    """A router named and placed like transformers' Qwen3MoeTopKRouter whose weights come from ``choose(logits)``."""

    class Qwen3MoeTopKRouter(torch.nn.Module):
        __module__ = "transformers.models.qwen3_moe.modeling_qwen3_moe"
        top_k, num_experts, norm_topk_prob = TOP_K, EXPERTS, True

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(EXPERTS, 16))

        def forward(self, hidden):
            logits = torch.nn.functional.linear(hidden, self.weight)
            weights, ids = choose(logits)
            return logits, weights, ids

    return Qwen3MoeTopKRouter()


def manual_weights(gate: torch.nn.Module, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Qwen3-MoE's rule written out: fp32 softmax over all experts, gathered at ids, renormalised."""
    probs = torch.softmax(hidden.reshape(-1, HIDDEN) @ gate.weight.T, dim=-1, dtype=torch.float32)
    chosen = probs.gather(1, ids)
    return (chosen / chosen.sum(dim=-1, keepdim=True)).to(hidden.dtype)


# (a) ----------------------------------------------------------------------------------------------------------------


def test_replaying_own_routing_reproduces_logits_and_router_outputs(model, input_ids):
    with Capture(gates(model)) as plain:
        reference = model(input_ids).logits
    own = record_routing(model, input_ids)
    assert own.shape == (input_ids.numel(), LAYERS, TOP_K) and own.dtype == torch.int64

    with replay_routing(model, own, record_live=True) as replay, Capture(gates(model)) as replayed:
        logits = model(input_ids).logits

    assert torch.equal(logits, reference)
    for before, after in zip(plain.outputs, replayed.outputs):
        for a, b in zip(before, after):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b)
    assert replay.mismatch().layer_fraction == 0.0


# (b) ----------------------------------------------------------------------------------------------------------------


def test_replaying_other_routing_runs_those_experts(model, input_ids):
    reference = model(input_ids).logits
    routing = random_routing(input_ids.numel())
    assert routing_mismatch(model, routing, input_ids).layer_fraction > 0.5  # really another routing

    blocks = [layer.mlp for layer in model.model.layers]
    experts = [block.experts for block in blocks]
    with replay_routing(model, routing), Capture(experts) as ran, Capture(blocks) as moe:
        logits = model(input_ids).logits

    assert not torch.allclose(logits, reference)
    for layer in range(LAYERS):
        hidden, ids, weights = ran.inputs[layer]
        assert torch.equal(ids, routing[:, layer])
        # the MoE block's output, computed by hand with the replayed experts
        block = blocks[layer]
        x = moe.inputs[layer][0].reshape(-1, HIDDEN)
        w = manual_weights(block.gate, x, routing[:, layer])
        expected = torch.zeros_like(x)
        for k in range(TOP_K):
            for token in range(x.shape[0]):
                e = routing[token, layer, k]
                gate, up = (block.experts.gate_up_proj[e] @ x[token]).chunk(2)
                expected[token] += w[token, k] * (block.experts.down_proj[e] @ (torch.nn.functional.silu(gate) * up))
        torch.testing.assert_close(moe.outputs[layer].reshape(-1, HIDDEN), expected, rtol=1e-5, atol=1e-6)


# (c) ----------------------------------------------------------------------------------------------------------------


def test_gradients_reach_router_weights_through_replayed_probabilities(model, input_ids):
    routing = random_routing(input_ids.numel(), seed=3)
    model.zero_grad(set_to_none=True)
    with replay_routing(model, routing), Capture(gates(model)) as seen:
        model(input_ids).logits.square().mean().backward()
    try:
        for layer, gate in enumerate(gates(model)):
            assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0, f"layer {layer}"
            (hidden,), (_, weights, ids) = seen.inputs[layer], seen.outputs[layer]
            assert torch.equal(ids, routing[:, layer])
            torch.testing.assert_close(weights, manual_weights(gate, hidden, ids), rtol=0, atol=0)
    finally:
        model.zero_grad(set_to_none=True)


def test_router_weight_gradient_equals_the_replay_formula(model):
    gate = gates(model)[1]
    hidden = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(4))
    routing = random_routing(5, seed=5)
    cotangent = torch.randn(5, TOP_K, generator=torch.Generator().manual_seed(6))

    gate.zero_grad(set_to_none=True)
    with replay_routing(model, routing):
        _, weights, ids = gate(hidden)
    (weights * cotangent).sum().backward()
    got, gate.weight.grad = gate.weight.grad, None

    weight = gate.weight.detach().clone().requires_grad_(True)
    probs = torch.softmax(hidden @ weight.T, dim=-1, dtype=torch.float32).gather(1, routing[:, 1])
    (probs / probs.sum(dim=-1, keepdim=True) * cotangent).sum().backward()
    torch.testing.assert_close(got, weight.grad)


# (d) ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_maps_each_request_to_its_tokens(model, padding):
    lengths, width = [5, 8, 3], 8
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        first = width - n if padding == "left" else 0
        mask[row, first : first + n] = 1
    # the engine never forwarded each request's final token: S_i = n_i - 1 (numpy, uint8, as the store hands it out)
    per_request = [random_routing(n - 1, seed=10 + row).numpy().astype("uint8") for row, n in enumerate(lengths)]

    flat = batch_routing(per_request, mask)
    assert flat.shape == (len(lengths) * width, LAYERS, TOP_K) and flat.dtype == torch.int64
    for row, n in enumerate(lengths):
        first = width - n if padding == "left" else 0
        rows = flat.view(len(lengths), width, LAYERS, TOP_K)[row]
        assert torch.equal(rows[first : first + n - 1], torch.from_numpy(per_request[row]).long())
        assert (rows[first + n - 1] == -1).all(), "the final token keeps the live routing"
        padded = torch.ones(width, dtype=torch.bool)
        padded[first : first + n] = False
        assert (rows[padded] == -1).all()

    input_ids = torch.randint(0, 128, mask.shape, generator=torch.Generator().manual_seed(7))
    experts = [layer.mlp.experts for layer in model.model.layers]
    with replay_routing(model, flat, record_live=True) as replay, Capture(experts) as ran:
        model(input_ids, attention_mask=mask)
    for layer in range(LAYERS):
        ids = ran.inputs[layer][1]
        replayed = (flat[:, layer] != -1).all(dim=1)
        assert torch.equal(ids[replayed], flat[replayed, layer])
        assert torch.equal(ids[~replayed], replay.live_topk[layer][~replayed])


def test_hooks_registered_before_replay_see_the_replayed_routing(model, input_ids):
    routing = random_routing(input_ids.numel(), seed=12)
    with Capture(gates(model)) as earlier:  # e.g. an engine's capture hook, registered before the trainer replays
        with replay_routing(model, routing):
            model(input_ids)
    for layer in range(LAYERS):
        assert torch.equal(earlier.outputs[layer][2], routing[:, layer])


# (e) ----------------------------------------------------------------------------------------------------------------


def test_missing_rows_fall_back_to_the_live_router(model, input_ids):
    routing = random_routing(input_ids.numel(), seed=8)
    routing[[0, 3, 7]] = -1  # tokens 0, 3 and 7 have no recorded routing in any layer
    routing[5, 2] = -1  # token 5 lacks layer 2 only
    with replay_routing(model, routing, record_live=True) as replay, Capture(gates(model)) as seen:
        model(input_ids)
    for layer, gate in enumerate(gates(model)):
        missing = (routing[:, layer] == -1).all(dim=1)
        (hidden,), (_, weights, ids) = seen.inputs[layer], seen.outputs[layer]
        _, live_weights, live_ids = gate(hidden)  # outside the context: the model's own router
        assert torch.equal(ids[missing], live_ids[missing])
        assert torch.equal(weights[missing], live_weights[missing])
        assert torch.equal(ids[~missing], routing[~missing, layer])
        assert torch.equal(replay.live_topk[layer], live_ids)


def test_missing_rows_keep_the_routers_own_weights_bit_for_bit():
    def off_by_1e4(logits):
        weights, ids = torch.topk(torch.softmax(logits, dim=-1), TOP_K, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True) * (1 + 1e-4), ids

    router = impostor(off_by_1e4)  # a supported name; its weights are 1e-4 off the rule, within the rule check
    holder, hidden = torch.nn.Sequential(router), torch.randn(2, 16)
    _, live_weights, live_ids = holder(hidden)
    with replay_routing(holder, torch.tensor([[[1, 6]], [[-1, -1]]])):
        _, weights, ids = holder(hidden)
    assert torch.equal(ids[1], live_ids[1]) and torch.equal(weights[1], live_weights[1])
    probs = torch.softmax(hidden @ router.weight.T, dim=-1)[:1, [1, 6]]
    torch.testing.assert_close(weights[:1], probs / probs.sum(dim=-1, keepdim=True), rtol=1e-6, atol=0)  # the rule


def test_all_missing_routing_is_the_model_itself(model, input_ids):
    reference = model(input_ids).logits
    with replay_routing(model, torch.full((input_ids.numel(), LAYERS, TOP_K), -1)):
        assert torch.equal(model(input_ids).logits, reference)


# (f) ----------------------------------------------------------------------------------------------------------------


def put(routing: torch.Tensor, index: tuple, value: int) -> torch.Tensor:
    routing = routing.clone()
    routing[index] = value
    return routing


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r[:, :3], r"the model has 4 MoE layers, the routing has 3"),
        (
            lambda r: torch.cat([r, r[..., :1]], dim=2),
            r"MoE layer 0 \(model\.layers\.0\.mlp\.gate\): expected ids of shape \[12, 2\] \(top_k 2\), got \[12, 3\]",
        ),
        (lambda r: put(r, (4, 2, 1), 8), r"MoE layer 2 .*expert id 8 at token 4 is out of range \[0, 8\)"),
        (lambda r: put(r, (1, 3, 0), -2), r"MoE layer 3 .*expert id -2 at token 1"),
        (lambda r: put(r, (1, 0, 0), -1), r"MoE layer 0 .*1 token rows mix -1 with expert ids"),
        (lambda r: put(r, (2, 1), 5), r"MoE layer 1 .*1 token rows name the same expert twice"),
        (lambda r: r.float(), r"expected integer expert ids for routing, got torch.float32"),
        (lambda r: [r[:, layer] for layer in range(LAYERS - 1)] + [r[:5, 3]], r"MoE layer 3 .*got \[5, 2\]"),
    ],
    ids=["layers", "top_k", "id_too_large", "id_negative", "partial_row", "duplicate", "float", "layer_tokens"],
)
def test_bad_routing_is_refused_with_a_clear_error(model, change, error):
    routing = change(random_routing(12))
    with pytest.raises((ValueError, TypeError), match=error):
        with replay_routing(model, routing):
            pass


def test_token_count_mismatch_names_layer_expected_and_got(model, input_ids):
    routing = random_routing(input_ids.numel() + 1)
    expected = (
        r"MoE layer 0 \(model\.layers\.0\.mlp\.gate\): "
        r"expected routing for 12 tokens \(the forward's tokens\), got 13$"
    )
    with pytest.raises(ValueError, match=expected):
        with replay_routing(model, routing):
            model(input_ids)


def test_model_without_routers_is_refused():
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    with pytest.raises(TypeError, match=r"LlamaForCausalLM has no supported MoE router"):
        with replay_routing(transformers.LlamaForCausalLM(config), torch.zeros(1, 1, 1, dtype=torch.long)):
            pass


def test_batch_routing_refuses_a_request_longer_than_its_row():
    mask = torch.tensor([[0, 1, 1, 1]])
    with pytest.raises(ValueError, match=r"sequence 0 has routing for 4 tokens but 3 real tokens"):
        batch_routing([torch.zeros(4, LAYERS, TOP_K, dtype=torch.long)], mask)
    with pytest.raises(ValueError, match=r"sequence 0 has routing for 1 tokens but 3 real tokens"):
        batch_routing([torch.zeros(1, LAYERS, TOP_K, dtype=torch.long)], mask)


# (g) ----------------------------------------------------------------------------------------------------------------


def router_state(model) -> list:
    return [(gate.forward, dict(gate._forward_hooks)) for gate in gates(model)]


def test_original_routers_are_restored_on_exit_and_on_exception(model, input_ids):
    before, reference = router_state(model), model(input_ids).logits
    routing = random_routing(input_ids.numel(), seed=9)

    with replay_routing(model, routing):
        assert router_state(model) != before
        assert not torch.equal(model(input_ids).logits, reference)
    assert router_state(model) == before
    assert torch.equal(model(input_ids).logits, reference)

    with pytest.raises(RuntimeError, match="boom"):
        with replay_routing(model, routing):
            raise RuntimeError("boom")
    assert router_state(model) == before

    with pytest.raises(ValueError, match="expected routing for 12 tokens"):  # raised inside the forward
        with replay_routing(model, routing[:5]):
            model(input_ids)
    assert router_state(model) == before
    assert torch.equal(model(input_ids).logits, reference)


# metrics and misc ---------------------------------------------------------------------------------------------------


def test_compare_routing_counts_sets_and_skips_missing_rows():
    rollout = torch.tensor([[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[-1, -1], [0, 1]], [[-1, -1], [-1, -1]]])
    live = torch.tensor([[[1, 0], [2, 3]], [[4, 5], [6, 0]], [[5, 6], [0, 2]], [[1, 2], [3, 4]]])
    result = compare_routing(live, rollout)
    assert (result.rows, result.tokens) == (5, 3)
    assert result.layer_fraction == pytest.approx(2 / 5)  # [1, 0] is the set {0, 1}: not a difference
    assert result.token_fraction == pytest.approx(2 / 3)
    assert result.per_layer == pytest.approx([0.0, 2 / 3])


def test_moe_routers_lists_gates_in_layer_order(model):
    assert [name for name, _ in moe_routers(model)] == [f"model.layers.{i}.mlp.gate" for i in range(LAYERS)]


def test_nested_replay_is_refused(model, input_ids):
    routing = random_routing(input_ids.numel())
    with replay_routing(model, routing):
        with pytest.raises(RuntimeError, match="already replaying"):
            with replay_routing(model, routing):
                pass
        assert all(len(gate._forward_hooks) == 1 for gate in gates(model))


# other router families ----------------------------------------------------------------------------------------------

_SMALL = dict(vocab_size=128, hidden_size=HIDDEN, num_attention_heads=4, num_key_value_heads=2, head_dim=16)


def _softmax_renormalised(logits, ids, norm=True):
    chosen = torch.softmax(logits, dim=-1, dtype=torch.float32).gather(1, ids)
    return chosen / chosen.sum(dim=-1, keepdim=True) if norm else chosen


FAMILIES = {
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        dict(intermediate_size=32, num_hidden_layers=3, num_local_experts=EXPERTS, num_experts_per_tok=TOP_K),
        lambda router, logits, ids: _softmax_renormalised(logits, ids),
    ),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        dict(
            intermediate_size=64, moe_intermediate_size=32, shared_expert_intermediate_size=32, num_hidden_layers=3,
            num_experts=EXPERTS, num_experts_per_tok=TOP_K, norm_topk_prob=False,
        ),
        lambda router, logits, ids: _softmax_renormalised(logits, ids, norm=False),
    ),
    "deepseek_v3": (
        "DeepseekV3Config",
        "DeepseekV3ForCausalLM",
        dict(
            intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1,
            n_routed_experts=EXPERTS, num_experts_per_tok=TOP_K, n_group=2, topk_group=1, n_shared_experts=1,
            q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, head_dim=8,
            routed_scaling_factor=2.5,
        ),
        lambda router, logits, ids: (lambda w: w / (w.sum(dim=-1, keepdim=True) + 1e-20) * 2.5)(
            logits.sigmoid().gather(1, ids)
        ),
    ),
    "gpt_oss": (
        "GptOssConfig",
        "GptOssForCausalLM",
        dict(
            intermediate_size=32, num_hidden_layers=2, num_local_experts=EXPERTS, num_experts_per_tok=TOP_K,
            sliding_window=8, layer_types=["sliding_attention", "full_attention"],
        ),
        lambda router, logits, ids: torch.softmax(logits.gather(1, ids), dim=1),
    ),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_router_families_replay_exactly(family):
    config_name, model_name, sizes, rule = FAMILIES[family]
    torch.manual_seed(0)
    other = getattr(transformers, model_name)(getattr(transformers, config_name)(**{**_SMALL, **sizes})).eval()
    routers = [router for _, router in moe_routers(other)]
    with torch.no_grad():
        for router in routers:
            router.weight.normal_(0.0, 0.5)
    input_ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(1))
    reference = other(input_ids).logits

    with replay_routing(other, record_routing(other, input_ids)):
        assert torch.equal(other(input_ids).logits, reference)

    routing = torch.rand(input_ids.numel(), len(routers), EXPERTS).argsort(dim=-1)[..., :TOP_K]
    with replay_routing(other, routing), Capture(routers) as seen:
        assert not torch.allclose(other(input_ids).logits, reference)
    for layer, router in enumerate(routers):
        (hidden,), (logits, weights, ids) = seen.inputs[layer], seen.outputs[layer]
        assert torch.equal(ids, routing[:, layer])
        torch.testing.assert_close(weights, rule(router, logits, ids).to(weights.dtype))


def _router_class(name: str):
    """The installed transformers class called ``name``, or None."""
    base = Path(transformers.__file__).parent / "models"
    for path in base.glob("*/modeling_*.py"):
        if f"class {name}(" in path.read_text():
            module = __import__(f"transformers.models.{path.parent.name}.{path.stem}", fromlist=[name])
            return getattr(module, name)
    return None


@pytest.mark.parametrize("name", SUPPORTED_ROUTERS)
def test_every_supported_router_class_matches_its_rule(name):
    cls = _router_class(name)
    if cls is None:
        pytest.skip(f"{name} is not in transformers {transformers.__version__}")
    router = cls.__new__(cls)  # its own forward, with the attributes its __init__ would set
    torch.nn.Module.__init__(router)
    router.top_k, router.num_experts, router.hidden_dim = TOP_K, EXPERTS, 16
    router.routed_scaling_factor, router.num_group, router.topk_group, router.topk_method = 2.5, 2, 1, "greedy"
    router.weight = torch.nn.Parameter(torch.zeros(EXPERTS, 16))
    router.bias = torch.nn.Parameter(torch.zeros(EXPERTS))
    router.e_score_correction_bias = torch.nn.Buffer(torch.zeros(EXPERTS))
    holder = torch.nn.Sequential(router)
    for norm in (True, False):
        for dtype in (torch.float32, torch.bfloat16):
            router.norm_topk_prob = norm
            holder.to(dtype)
            hidden = torch.randn(2, 16, dtype=dtype)
            with replay_routing(holder, torch.tensor([[[1, 6]], [[-1, -1]]])):  # the rule check runs on entry
                _, weights, ids = router(hidden)
            _, live_weights, live_ids = router(hidden)
            assert ids[0].tolist() == [1, 6] and weights.dtype == live_weights.dtype and ids.dtype == live_ids.dtype
            assert torch.equal(ids[1], live_ids[1]) and torch.equal(weights[1], live_weights[1])


def test_a_router_whose_code_changed_is_refused():
    sigmoid = lambda logits: torch.topk(logits.sigmoid(), TOP_K, dim=-1)  # noqa: E731
    holder = torch.nn.Sequential(impostor(sigmoid))  # the name of a supported router, with sigmoid weights
    routing = torch.tensor([[[1, 6]]])
    with pytest.raises(TypeError, match=r"Qwen3MoeTopKRouter \(0\) no longer computes its weights as replay assumes"):
        with replay_routing(holder, routing):
            pass
    with replay_routing(holder, routing, check=False):  # the caller's own responsibility
        assert holder[0](torch.randn(1, 16))[2].tolist() == [[1, 6]]


def test_gradient_checkpointing_recomputes_with_the_replayed_routing(model, input_ids):
    routing = random_routing(input_ids.numel(), seed=11)

    def router_grads() -> list:
        model.zero_grad(set_to_none=True)
        with replay_routing(model, routing):
            model(input_ids).logits.square().mean().backward()
        return [gate.weight.grad.clone() for gate in gates(model)]

    model.train()
    try:
        plain = router_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        checkpointed = router_grads()
    finally:
        model.gradient_checkpointing_disable()
        model.eval()
        model.zero_grad(set_to_none=True)
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)

"""RouterTap: each layer's ids held by reference, written into the routing buffer in one go (numpy here; PyTorch
paths below run where PyTorch is installed, CUDA ones on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from r3.tap import RouterTap

pytestmark = pytest.mark.timeout(60)

LAYERS, TOP_K, MAX_TOKENS = 4, 3, 16


def layer_ids(rng: np.random.Generator, n: int, dtype=np.int64) -> list[np.ndarray]:
    return [rng.integers(0, 64, size=(n, TOP_K)).astype(dtype) for _ in range(LAYERS)]


@pytest.mark.parametrize("buffer_dtype", [np.int32, np.int64])
def test_write_lays_every_layer_at_its_index_and_leaves_the_rest(buffer_dtype) -> None:
    rng = np.random.default_rng(1)
    ids = layer_ids(rng, 5)
    tap = RouterTap(LAYERS, TOP_K)
    for layer in (2, 0, 3, 1):  # hooks may fire in any order; the layer index places them
        tap.record(layer, ids[layer])
    assert tap.recorded == LAYERS
    routing = np.full((MAX_TOKENS, LAYERS, TOP_K), -7, dtype=buffer_dtype)
    assert tap.write(routing) == 5
    for layer in range(LAYERS):
        np.testing.assert_array_equal(routing[:5, layer, :], ids[layer])
    assert (routing[5:] == -7).all()
    assert tap.recorded == 0


def test_the_tap_holds_references_not_copies() -> None:
    """The hook copies nothing: what the ids hold at write time is what is written (as the stack in a CUDA graph
    reads each replay's ids)."""
    ids = layer_ids(np.random.default_rng(2), 3)
    tap = RouterTap(LAYERS, TOP_K)
    for layer, x in enumerate(ids):
        tap.record(layer, x)
    ids[1][:] = 42
    routing = np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.int32)
    tap.write(routing)
    assert (routing[:3, 1] == 42).all()


def test_consecutive_forwards_each_write_their_own_ids() -> None:
    rng = np.random.default_rng(3)
    tap = RouterTap(LAYERS, TOP_K)
    routing = np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.int64)
    for n in (7, 1, 0, MAX_TOKENS):
        ids = layer_ids(rng, n)
        for layer, x in enumerate(ids):
            tap.record(layer, x)
        assert tap.write(routing) == n
        np.testing.assert_array_equal(routing[:n], np.stack(ids, axis=1))


def test_a_missing_layer_is_named_and_nothing_is_written() -> None:
    tap = RouterTap(LAYERS, TOP_K)
    ids = layer_ids(np.random.default_rng(4), 2)
    tap.record(0, ids[0])
    tap.record(3, ids[3])
    routing = np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.int32)
    with pytest.raises(ValueError, match=r"^MoE layers 1, 2 were not recorded in this forward \(2 of 4 were\)"):
        tap.write(routing)
    assert (routing == 0).all()
    assert tap.recorded == 2  # kept: the caller may record the rest or discard
    tap.discard()
    assert tap.recorded == 0


def test_a_layer_recorded_twice_is_refused() -> None:
    tap = RouterTap(LAYERS, TOP_K)
    ids = layer_ids(np.random.default_rng(5), 2)
    tap.record(1, ids[1])
    with pytest.raises(ValueError, match="MoE layer 1 recorded twice in one forward"):
        tap.record(1, ids[1])
    assert tap.recorded == 1


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 3), dtype=np.float32), r"expected int32 or int64 top-k ids of shape \[tokens, 3\], "
                                         r"got numpy float32 \[4, 3\]"),
    (np.zeros((4, 2), dtype=np.int64), r"got numpy int64 \[4, 2\]"),
    (np.zeros((4, 3, 1), dtype=np.int64), r"got numpy int64 \[4, 3, 1\]"),
    ([[1, 2, 3]], r"got list$"),
])
def test_ids_of_the_wrong_kind_are_refused(bad, message) -> None:
    tap = RouterTap(LAYERS, TOP_K)
    with pytest.raises(ValueError, match=message):
        tap.record(0, bad)
    assert tap.recorded == 0


def test_layers_must_route_the_same_tokens_with_the_same_dtype() -> None:
    tap = RouterTap(LAYERS, TOP_K)
    tap.record(0, np.zeros((4, TOP_K), dtype=np.int64))
    with pytest.raises(ValueError, match=r"MoE layer 1: ids numpy int64 \[5, 3\] differ from the layers recorded "
                                         r"before \(numpy int64 \[4, 3\]\)"):
        tap.record(1, np.zeros((5, TOP_K), dtype=np.int64))
    with pytest.raises(ValueError, match="MoE layer 2: ids numpy int32"):
        tap.record(2, np.zeros((4, TOP_K), dtype=np.int32))


@pytest.mark.parametrize("layer", [-1, LAYERS, 1.0, True, "0"])
def test_a_layer_index_outside_the_model_is_refused(layer) -> None:
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 4\)"):
        RouterTap(LAYERS, TOP_K).record(layer, np.zeros((1, TOP_K), dtype=np.int64))


@pytest.mark.parametrize("routing, message", [
    (np.zeros((MAX_TOKENS, LAYERS + 1, TOP_K), dtype=np.int32), r"shape \[max_tokens, 4, 3\] numpy, got numpy int32 "
                                                                r"\[16, 5, 3\]"),
    (np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.float64), "got numpy float64"),
    (np.zeros((2, LAYERS, TOP_K), dtype=np.int32), r"the forward routed 3 tokens, the routing buffer holds 2 "
                                                   r"\(max_tokens\)"),
])
def test_a_routing_buffer_that_cannot_take_the_ids_is_refused(routing, message) -> None:
    tap = RouterTap(LAYERS, TOP_K)
    for layer, x in enumerate(layer_ids(np.random.default_rng(6), 3)):
        tap.record(layer, x)
    with pytest.raises(ValueError, match=message):
        tap.write(routing)
    assert tap.recorded == LAYERS


@pytest.mark.parametrize("layers, top_k", [(0, 8), (48, 0), (2.0, 8), (True, 8)])
def test_the_shape_is_checked(layers, top_k) -> None:
    with pytest.raises(ValueError, match="must be an int >= 1"):
        RouterTap(layers, top_k)


class FakeRouter:
    """register_forward_hook as torch.nn.Module has it, enough to drive attach without PyTorch."""

    def __init__(self) -> None:
        self.hooks: list = []

    def register_forward_hook(self, hook):
        self.hooks.append(hook)
        return hook

    def __call__(self, output):
        for h in self.hooks:
            h(self, (), output)
        return output


def test_attach_hooks_every_router_in_layer_order() -> None:
    routers = [FakeRouter() for _ in range(LAYERS)]
    tap = RouterTap(LAYERS, TOP_K)
    handles = tap.attach(routers)
    assert len(handles) == LAYERS
    ids = layer_ids(np.random.default_rng(7), 2)
    for layer, r in enumerate(routers):
        r((None, None, ids[layer]))  # (logits, scores, indices) as Qwen3MoeTopKRouter returns
    routing = np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.int64)
    tap.write(routing)
    np.testing.assert_array_equal(routing[:2], np.stack(ids, axis=1))
    with pytest.raises(ValueError, match="expected 4 routers"):
        tap.attach(routers[:3])


def test_a_record_after_discard_starts_a_new_forward() -> None:
    tap = RouterTap(LAYERS, TOP_K)
    rng = np.random.default_rng(8)
    for layer, x in enumerate(layer_ids(rng, 3)[:2]):
        tap.record(layer, x)  # a forward that failed half way
    tap.discard()
    ids = layer_ids(rng, 2)
    for layer, x in enumerate(ids):
        tap.record(layer, x)
    routing = np.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=np.int64)
    assert tap.write(routing) == 2
    np.testing.assert_array_equal(routing[:2], np.stack(ids, axis=1))


def test_the_default_output_index_on_a_bare_output_is_refused_by_name() -> None:
    router = FakeRouter()
    tap = RouterTap(1, TOP_K)
    tap.attach([router])
    with pytest.raises(ValueError, match=r"MoE layer 0: output_index=2 needs a tuple or list output that long, the "
                                         r"router returned numpy int64 \[5, 3\] \(output_index=None records"):
        router(np.ones((5, TOP_K), dtype=np.int64))
    with pytest.raises(ValueError, match="the router returned a tuple of 2"):
        router((None, np.ones((5, TOP_K), dtype=np.int64)))
    assert tap.recorded == 0


def test_a_hook_on_a_bare_output() -> None:
    router = FakeRouter()
    tap = RouterTap(1, TOP_K)
    tap.attach([router], output_index=None)
    router(np.ones((2, TOP_K), dtype=np.int64))
    routing = np.zeros((4, 1, TOP_K), dtype=np.int32)
    assert tap.write(routing) == 2 and (routing[:2] == 1).all()


# ---------------------------------------------------------------------------------------------------------- PyTorch


def test_torch_hooks_on_real_modules_write_both_dtypes() -> None:
    torch = pytest.importorskip("torch")

    class Router(torch.nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(6, 10)
            torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(seed))

        def forward(self, x):
            logits = self.proj(x)
            _, idx = torch.topk(logits, TOP_K, dim=-1)
            return logits, None, idx

    routers = torch.nn.ModuleList(Router(i) for i in range(LAYERS))
    tap = RouterTap(LAYERS, TOP_K)
    tap.attach(list(routers))
    for n, dtype in ((5, torch.int64), (5, torch.int32), (3, torch.int32), (0, torch.int32)):
        x = torch.randn(n, 6)
        expected = torch.stack([r(x)[2] for r in routers], dim=1)  # the hooks fire here too
        routing = torch.full((MAX_TOKENS, LAYERS, TOP_K), -1, dtype=dtype)
        assert tap.write(routing) == n
        assert torch.equal(routing[:n], expected.to(dtype))
        assert (routing[n:] == -1).all()


def test_torch_int32_ids_into_an_int64_buffer_and_a_numpy_buffer() -> None:
    torch = pytest.importorskip("torch")
    ids = [torch.randint(0, 64, (4, TOP_K), dtype=torch.int32) for _ in range(LAYERS)]
    tap = RouterTap(LAYERS, TOP_K)
    for layer, x in enumerate(ids):
        tap.record(layer, x)
    routing = torch.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=torch.int64)
    assert tap.write(routing) == 4
    assert torch.equal(routing[:4], torch.stack(ids, dim=1).long())
    # the host backend hands out numpy views; a PyTorch model's CPU ids go into them
    for layer, x in enumerate(ids):
        tap.record(layer, x)
    host = np.full((MAX_TOKENS, LAYERS, TOP_K), -1, dtype=np.int32)
    assert tap.write(host) == 4
    np.testing.assert_array_equal(host[:4], torch.stack(ids, dim=1).numpy())
    assert (host[4:] == -1).all()


def test_torch_a_buffer_on_another_device_is_refused_and_the_ids_are_kept() -> None:
    torch = pytest.importorskip("torch")
    tap = RouterTap(1, TOP_K)
    ids = torch.ones((2, TOP_K), dtype=torch.int64)
    tap.record(0, ids)
    with pytest.raises(ValueError, match=r"routing buffer of shape \[max_tokens, 1, 3\] on cpu, got int32 \[4, 1, 3\] "
                                         r"on meta"):
        tap.write(torch.zeros((4, 1, TOP_K), dtype=torch.int32, device="meta"))
    assert tap.recorded == 1
    routing = torch.zeros((4, 1, TOP_K), dtype=torch.int32)
    assert tap.write(routing) == 2 and bool((routing[:2] == 1).all())
    meta = RouterTap(1, TOP_K)
    meta.record(0, torch.zeros((2, TOP_K), dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match=r"on meta, got numpy int32"):  # a numpy buffer takes CPU ids only
        meta.write(np.zeros((4, 1, TOP_K), dtype=np.int32))
    mixed = RouterTap(2, TOP_K)
    mixed.record(0, np.zeros((2, TOP_K), dtype=np.int64))
    with pytest.raises(ValueError, match="differ from the layers recorded before"):
        mixed.record(1, torch.zeros((2, TOP_K), dtype=torch.int64))


def test_cuda_one_stack_matches_per_layer_copies_in_a_graph() -> None:
    """On a GPU: the tap's write captured in a CUDA graph reads each replay's ids (what the bench relies on)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    dev = torch.device("cuda")
    weights = [torch.randn(6, 10, device=dev) for _ in range(LAYERS)]
    x = torch.zeros(5, 6, device=dev)
    tap = RouterTap(LAYERS, TOP_K)
    routing = torch.zeros((MAX_TOKENS, LAYERS, TOP_K), dtype=torch.int32, device=dev)

    def forward():
        h = x
        for layer, w in enumerate(weights):
            tap.record(layer, torch.topk(h @ w, TOP_K, dim=-1).indices)
            h = h + 1
        tap.write(routing)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        forward()  # warm up outside the capture, as PyTorch asks
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        forward()
    for _ in range(3):
        x.copy_(torch.randn(5, 6, device=dev))
        g.replay()
        h, want = x, []
        for w in weights:
            want.append(torch.topk(h @ w, TOP_K, dim=-1).indices)
            h = h + 1
        assert torch.equal(routing[:5].long(), torch.stack(want, dim=1))

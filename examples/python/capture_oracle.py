"""A pure-PyTorch stand-in for ``r3.engine.RoutingCapture`` + the sidecar: the same engine-facing calls
(``begin_step``/``end_step``, ``capture``, ``admitted``/``finished``/``aborted``, ``close``, ``stats``) and the
sidecar's store semantics, without a socket or a JVM. Synchronous and slow by design (a ``.cpu()`` per step); it
exists so the engine loop and the verification can be tested on a CPU.

Semantics it mirrors (pipeline-core): a step's rows are scattered into a host store keyed by slot, padding (slot -1)
skipped; ``finished`` gathers the request's slots in token order into ``[seq_len, layers, top_k]``; ``aborted``
stores nothing (RequestAborted: "no routing record is written for it"); ids are checked against ``num_experts``.
Stricter than the sidecar on purpose: misuse (a bad id or slot, an unknown or duplicate request id) raises here, so an
engine loop under test fails at once, where the real sidecar stores a missing row with a reason or answers a
REQUEST_ERROR and goes on (docs/contract.md).
"""
from __future__ import annotations

import numpy as np
import torch


class OracleCaptureError(RuntimeError):
    pass


class OracleStats:
    def __init__(self):
        self.steps = 0
        self.tokens = 0
        self.dropped_steps = 0


class OracleCapture:
    def __init__(self, layers: int, top_k: int, num_experts: int, max_tokens: int, num_slots: int,
                 device: str = "cpu", buffers: int = 2, id_dtype=torch.int32, slot_dtype=torch.int64):
        self.layers, self.top_k, self.num_experts = layers, top_k, num_experts
        self.max_tokens, self.num_slots = max_tokens, num_slots
        self.routing = [torch.full((max_tokens, layers, top_k), -1, dtype=id_dtype, device=device) for _ in range(buffers)]
        self.slots = [torch.full((max_tokens,), -1, dtype=slot_dtype, device=device) for _ in range(buffers)]
        self.store = np.full((num_slots, layers, top_k), -1, dtype=np.int64)
        self.stored: dict[str, np.ndarray] = {}
        self.live: set[str] = set()
        self.aborted_ids: list[str] = []
        self.stats = OracleStats()
        self._next_step = 0
        self._open_buffer: int | None = None
        self._finished = 0

    # ---- steps ----
    def begin_step(self):
        if self._open_buffer is not None:
            raise OracleCaptureError(f"begin_step twice without end_step (step {self._next_step})")
        b = self._next_step % len(self.routing)
        self._open_buffer = b
        self.routing[b].fill_(-1)  # an unwritten layer then shows up as -1 at end_step
        self.slots[b].fill_(-1)
        return self.routing[b], self.slots[b]

    def end_step(self, num_tokens: int, *, slot_mapping: torch.Tensor | None = None) -> int:
        b = self._open_buffer
        if b is None:
            raise OracleCaptureError("end_step without begin_step")
        if slot_mapping is not None:
            self.slots[b][:num_tokens].copy_(slot_mapping)
        self._open_buffer = None
        return self._take(self.routing[b][:num_tokens], self.slots[b][:num_tokens])

    def capture(self, topk_ids: torch.Tensor, slot_mapping: torch.Tensor) -> int:
        if topk_ids.dim() != 3 or tuple(topk_ids.shape[1:]) != (self.layers, self.top_k) or \
                topk_ids.shape[0] != slot_mapping.shape[0]:
            raise OracleCaptureError(f"expected topk ids [tokens, {self.layers}, {self.top_k}] and slots [tokens], got "
                                     f"{list(topk_ids.shape)} and {list(slot_mapping.shape)}")
        return self._take(topk_ids, slot_mapping)

    def _take(self, routing: torch.Tensor, slots: torch.Tensor) -> int:
        step = self._next_step
        n = routing.shape[0]
        if n > self.max_tokens:
            raise OracleCaptureError(f"step {step}: {n} tokens > max_tokens {self.max_tokens}")
        rows = routing.to("cpu", torch.int64).numpy()
        s = slots.to("cpu", torch.int64).numpy()
        real = s >= 0
        bad_slot = real & (s >= self.num_slots)
        if bad_slot.any():
            i = int(np.argmax(bad_slot))
            raise OracleCaptureError(f"step {step}: slot_mapping[{i}] = {s[i]} out of range [0, {self.num_slots})")
        r = rows[real]
        if r.size and (r.min() < 0 or r.max() >= self.num_experts):
            tok, layer, k = np.argwhere(((rows < 0) | (rows >= self.num_experts)) & real[:, None, None])[0]
            raise OracleCaptureError(f"step {step}: routing[{tok}, {layer}, {k}] = {rows[tok, layer, k]} is not an "
                                     f"expert id in [0, {self.num_experts}) (a layer the hooks did not write?)")
        self.store[s[real]] = r
        self._next_step += 1
        self.stats.steps += 1
        self.stats.tokens += n
        return step

    # ---- lifecycle ----
    def admitted(self, request_id: str, cached_tokens: int = 0) -> None:
        if request_id in self.live:
            raise OracleCaptureError(f"duplicate request id '{request_id}': it is already live")
        self.live.add(request_id)

    def finished(self, request_id: str, slots=None, block_table=None, block_size=None, seq_len=None) -> None:
        self._require_live(request_id)
        if slots is None:
            if block_table is None or block_size is None or seq_len is None:
                raise OracleCaptureError("finished needs slots, or block_table + block_size + seq_len")
            slots = [block_table[p // block_size] * block_size + p % block_size for p in range(seq_len)]
        s = np.asarray(list(slots), dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= self.num_slots):
            raise OracleCaptureError(f"finished '{request_id}': a slot is out of range [0, {self.num_slots})")
        self.stored[request_id] = self.store[s].copy()
        self.live.discard(request_id)
        self._finished += 1

    def aborted(self, request_id: str) -> None:
        self._require_live(request_id)
        self.live.discard(request_id)
        self.aborted_ids.append(request_id)

    def slots_moved(self, source, destination) -> None:
        src = np.asarray(list(source), dtype=np.int64)
        dst = np.asarray(list(destination), dtype=np.int64)
        self.store[dst] = self.store[src]

    def round_cleared(self, round_id: int) -> None:
        self.live.clear()

    def close(self) -> dict:
        return {"steps": self.stats.steps, "tokens": self.stats.tokens, "requests_finished": self._finished}

    def _require_live(self, request_id: str) -> None:
        if request_id not in self.live:
            raise OracleCaptureError(f"unknown request id '{request_id}': not admitted, or already finished or aborted")

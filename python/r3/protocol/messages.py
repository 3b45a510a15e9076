"""One frozen dataclass per frame type, both directions; :data:`Message` is any of them."""

from __future__ import annotations

from dataclasses import dataclass

from r3.protocol.wire import FAILURE_CODES, REQUEST_ERROR_CODES


@dataclass(frozen=True)
class BufferHandles:
    """Where one of the N buffers lives: memory handles, byte offsets and sizes of its routing and slots, and its ready event."""

    routing_handle: bytes
    routing_offset: int
    routing_bytes: int
    slots_handle: bytes
    slots_offset: int
    slots_bytes: int
    ready_event_handle: bytes


@dataclass(frozen=True)
class Hello:
    version: int
    backend: int
    device: int
    layers: int
    top_k: int
    num_experts: int
    id_bytes: int
    slot_bytes: int
    max_tokens: int
    engine_name: str
    buffers: tuple[BufferHandles, ...]


@dataclass(frozen=True)
class Step:
    """STEP, or STEP_SLOTS when ``slots`` holds the slot mapping's bytes (``tokens`` x HELLO's ``slot_bytes``)."""
    step_id: int
    buffer: int
    tokens: int
    slots: bytes | None = None


@dataclass(frozen=True)
class Admitted:
    request_id: str
    cached_tokens: int = 0


@dataclass(frozen=True)
class Finished:
    request_id: str
    slots: tuple[int, ...]


@dataclass(frozen=True)
class Aborted:
    request_id: str


@dataclass(frozen=True)
class SlotsMoved:
    source: tuple[int, ...]
    destination: tuple[int, ...]


@dataclass(frozen=True)
class RoundCleared:
    round: int


@dataclass(frozen=True)
class Goodbye:
    pass


@dataclass(frozen=True)
class Welcome:
    version: int
    backend: int
    consumed_event_handles: tuple[bytes, ...]
    store: str


@dataclass(frozen=True)
class Consumed:
    step_id: int
    buffer: int


@dataclass(frozen=True)
class Failed:
    code: int
    message: str

    def describe(self) -> str:
        """``FAILED code 3 (pipeline): <message>``."""
        return f"FAILED code {self.code} ({FAILURE_CODES.get(self.code, 'unknown')}): {self.message}"


@dataclass(frozen=True)
class RequestError:
    """One request's fault (version 3), and the session goes on.

    Code 1 (``not-live``): the FINISHED or ABORTED of ``request_id`` was refused and had no effect. Code 2
    (``step-fault``, ``request_id`` empty): a step held expert ids or slot mapping entries out of range; the message
    names the step and the first token of each kind. Those tokens' rows were dropped; abort the request a bad slot
    entry belonged to (its position keeps whatever the slot held, docs/contract.md).
    """

    code: int
    request_id: str
    message: str

    def describe(self) -> str:
        """``request <id>: <message> (code 1, not-live)``, or ``<message> (code 2, step-fault)``."""
        who = f"request {self.request_id}: " if self.request_id else ""
        return f"{who}{self.message} (code {self.code}, {REQUEST_ERROR_CODES.get(self.code, 'unknown')})"


@dataclass(frozen=True)
class Farewell:
    """The sidecar's answer to GOODBYE, sent once everything before it is stored: its counts for the connection."""

    steps: int
    tokens: int
    requests_finished: int


Message = (Hello | Step | Admitted | Finished | Aborted | SlotsMoved | RoundCleared | Goodbye | Welcome | Consumed | Failed
           | Farewell | RequestError)

"""The session's messages besides steps: a request's admission, finish and abort, moved slots, a cleared round, the
request errors the sidecar answered, and GOODBYE/FAREWELL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from r3 import protocol
from r3.engine.checks import _check_range, slots_from_block_table
from r3.engine.link import _SidecarLink
from r3.protocol import Farewell, RequestError


class _Lifecycle(_SidecarLink):
    """The lifecycle and close calls of :class:`~r3.engine.RoutingCapture`; they travel in the same ordered stream as
    the steps."""

    def admitted(self, request_id: str, cached_tokens: int = 0) -> None:
        """Sends ADMITTED: the request is live; its finish records rows written by steps after this call.

        ``cached_tokens``: how many leading positions the prefix cache served at this admission (vLLM's
        ``num_cached_tokens``, SGLang's ``cached_tokens``); their rows may come from an earlier request of the round.
        Rows past it that no step wrote after this call are missing rows (``before-admission``), never another
        request's data. Admitting a live id again (a preempted request resumed) replaces its admission. Waits for no
        answer; raises as :meth:`end_step` does (``ValueError`` for an id over 65535 UTF-8 bytes or a negative count).
        """
        _check_range("cached_tokens", cached_tokens, 0, 0xFFFFFFFF)
        self._lifecycle(lambda: protocol.encode_admitted(request_id, cached_tokens))

    def finished(self, request_id: str, slots: Sequence[int] | Any = None, *, block_table: Sequence[int] | Any = None,
                 block_size: int | None = None, seq_len: int | None = None) -> None:
        """Sends FINISHED: the sidecar gathers the request's routing from these slots, in token order.

        Give either ``slots`` (one per token: prompt then output, without the final token, which was never forwarded)
        or ``block_table`` with ``block_size`` and ``seq_len`` (the tokens that have routing): slot of position
        ``pos < seq_len`` is ``block_table[pos // block_size] * block_size + pos % block_size``. Send it before the
        request's KV blocks are reused. Waits for no answer (a 32k-token request is 128 kB: while the sidecar is
        not reading, the send waits for socket space, at most ``ack_timeout_s``); raises ``ValueError`` for bad slots or block
        table arguments, and as :meth:`end_step` does when the sidecar is lost.
        """
        if (slots is None) == (block_table is None):
            raise ValueError("finished takes either slots or block_table (with block_size and seq_len), not both or none")
        if block_table is not None:
            if block_size is None or seq_len is None:
                raise ValueError("finished with a block_table needs block_size and seq_len")
            slots = slots_from_block_table(block_table, int(block_size), int(seq_len))
        self._lifecycle(lambda: protocol.encode_finished(request_id, slots))

    def aborted(self, request_id: str) -> None:
        """Sends ABORTED (the request's routing is not gathered). Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_aborted(request_id))

    def slots_moved(self, source: Sequence[int] | Any, destination: Sequence[int] | Any) -> None:
        """Sends SLOTS_MOVED: the rows of ``source[i]`` now belong to ``destination[i]`` (KV blocks copied or swapped).
        ``ValueError`` when the lengths differ or a slot is outside int32. Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_slots_moved(source, destination))

    def round_cleared(self, round_id: int) -> None:
        """Sends ROUND_CLEARED for ``round_id`` (a u64). Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_round_cleared(round_id))

    def request_errors(self) -> list[RequestError]:
        """The REQUEST_ERRORs received since the last call, oldest first (reads what the sidecar sent, never blocks).

        Each names a request whose FINISHED or ABORTED was refused (code 1, ``not-live``): it has no record. The
        session goes on. At most :attr:`MAX_KEPT_REQUEST_ERRORS` are kept between calls; ``stats.request_errors``
        counts them all.
        """
        if not self._closed and not self._detached and self._failure is None:
            self._drain()
        out = list(self._request_errors)
        self._request_errors.clear()
        return out

    def _lifecycle(self, encode: Any) -> None:
        self._check_open()
        frame = encode()  # ValueError before anything is sent
        if self._detached:
            return
        self._drain()
        if self._pending:
            self._flush(None, block=True)  # the steps before it go first: FINISHED gathers their rows
        if not self._detached:
            self._send(frame, None)

    def close(self) -> Farewell | None:
        """Sends GOODBYE and waits (at most ``ack_timeout_s``) for FAREWELL, sent once everything before it is stored;
        then closes the socket and releases the buffers (the host file is unlinked).

        Returns the sidecar's counts (steps, tokens, requests finished), or ``None`` when the capture had detached
        (policy ``drop``). A begun step that was not ended is not sent. Raises :class:`SidecarError` when the sidecar
        is lost (policy ``raise``), after releasing everything. Calling it again returns the same result.
        """
        if self._closed:
            return self._farewell
        self._closed = True
        try:
            if not self._detached and self._failure is None:
                self._drain()
                if self._pending:
                    self._flush(None, block=True)
                if not self._detached:
                    self._send(protocol.encode_goodbye(), None)
                deadline = time.monotonic() + self._ack_timeout_s
                while self._farewell is None and not self._detached:
                    self._wait_readable(deadline, "FAREWELL (everything stored)", None)
            if self._failure is not None and not self._detached:
                raise self._error()
            return self._farewell
        finally:
            self._release()

    def _release(self) -> None:
        try:
            self._sock.close()
        finally:
            self._buffers.close()

"""What a :class:`~r3.engine.RoutingCapture` raises when the sidecar is lost."""

from __future__ import annotations

__all__ = ["SidecarError"]


class SidecarError(RuntimeError):
    """The sidecar failed, closed the connection, or did not answer in time.

    ``cause`` says what happened (the sidecar's FAILED message, "the sidecar closed the connection", an ack timeout);
    ``last_consumed`` is the id of the last step the sidecar acknowledged (``None`` before the first); ``code`` is the
    FAILED code (1 protocol, 2 hello, 3 pipeline, 4 busy) or ``None`` when the sidecar sent none.
    """

    def __init__(self, cause: str, *, last_consumed: int | None = None, code: int | None = None,
                 step: int | None = None) -> None:
        if step is None and last_consumed is None:
            text = f"r3 sidecar: {cause}"
        else:
            where = "" if step is None else f" at step {step}"
            consumed = "none yet" if last_consumed is None else str(last_consumed)
            text = f"r3 sidecar lost{where} (last step consumed: {consumed}): {cause}"
        super().__init__(text)
        self.cause = cause
        self.last_consumed = last_consumed
        self.code = code
        self.step = step

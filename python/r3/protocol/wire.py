"""What both sides agree on: the protocol version, the body limit, the backends, the frame types and the codes of
FAILED and REQUEST_ERROR, the layouts of fixed-size fields, and :class:`ProtocolError`."""

from __future__ import annotations

import struct

VERSION = 3
MAX_BODY = 16 * 1024 * 1024

BACKEND_HOST = 0
BACKEND_CUDA = 1

# engine to sidecar
HELLO = 1
STEP = 2
ADMITTED = 3
FINISHED = 4
ABORTED = 5
SLOTS_MOVED = 6
ROUND_CLEARED = 7
GOODBYE = 8
STEP_SLOTS = 9  # version 2: a STEP that carries its slot mapping
ADMITTED_CACHED = 10  # version 3: an ADMITTED with the prefix-cache hit (cached_tokens)
# sidecar to engine
WELCOME = 101
CONSUMED = 102
FAILED = 103
FAREWELL = 104
REQUEST_ERROR = 105  # version 3: one request's fault; the session goes on

REQUEST_ERROR_CODES = {1: "not-live", 2: "step-fault"}

FAILURE_CODES = {1: "protocol", 2: "hello", 3: "pipeline", 4: "busy"}

_LEN = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_STEP = struct.Struct("<BQHI")
_CONSUMED = struct.Struct("<BQH")
_FAREWELL = struct.Struct("<BQQQ")
_HELLO_HEAD = struct.Struct("<BHBiHHIBBIH")
_BUFFER_RANGE = struct.Struct("<QQ")

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


class ProtocolError(ValueError):
    """A frame that does not follow the protocol (bad length, unknown type, truncated payload)."""

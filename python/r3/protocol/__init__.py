"""Frames of the engine bridge protocol, version 3 (docs/engine-bridge.md), both directions.

Every frame is ``u32 body_length`` then the body: ``u8 type`` and the payload, all integers little-endian. A string is
``u16 byte_length`` + UTF-8 bytes, a blob ``u16 length`` + bytes; a body is at most 16 MiB. Standard library only.

The encoders return whole frames (length prefix included) as ``bytes``; :func:`decode` turns one frame body into a
message object; :class:`FrameReader` cuts a byte stream into frame bodies. Encoders raise :class:`ValueError` naming the
field for a value the wire cannot carry; :func:`decode` raises :class:`ProtocolError` for a malformed body.
"""

from __future__ import annotations

from r3.protocol.decoding import _NAMES as _NAMES
from r3.protocol.decoding import FrameReader as FrameReader
from r3.protocol.decoding import _Cursor as _Cursor
from r3.protocol.decoding import decode as decode
from r3.protocol.encoding import _blob as _blob
from r3.protocol.encoding import _frame as _frame
from r3.protocol.encoding import _i32s as _i32s
from r3.protocol.encoding import _string as _string
from r3.protocol.encoding import _unsigned as _unsigned
from r3.protocol.encoding import encode_aborted as encode_aborted
from r3.protocol.encoding import encode_admitted as encode_admitted
from r3.protocol.encoding import encode_consumed as encode_consumed
from r3.protocol.encoding import encode_failed as encode_failed
from r3.protocol.encoding import encode_farewell as encode_farewell
from r3.protocol.encoding import encode_finished as encode_finished
from r3.protocol.encoding import encode_goodbye as encode_goodbye
from r3.protocol.encoding import encode_hello as encode_hello
from r3.protocol.encoding import encode_request_error as encode_request_error
from r3.protocol.encoding import encode_round_cleared as encode_round_cleared
from r3.protocol.encoding import encode_slots_moved as encode_slots_moved
from r3.protocol.encoding import encode_step as encode_step
from r3.protocol.encoding import encode_step_slots as encode_step_slots
from r3.protocol.encoding import encode_welcome as encode_welcome
from r3.protocol.encoding import int32_array as int32_array
from r3.protocol.messages import Aborted as Aborted
from r3.protocol.messages import Admitted as Admitted
from r3.protocol.messages import BufferHandles as BufferHandles
from r3.protocol.messages import Consumed as Consumed
from r3.protocol.messages import Failed as Failed
from r3.protocol.messages import Farewell as Farewell
from r3.protocol.messages import Finished as Finished
from r3.protocol.messages import Goodbye as Goodbye
from r3.protocol.messages import Hello as Hello
from r3.protocol.messages import Message as Message
from r3.protocol.messages import RequestError as RequestError
from r3.protocol.messages import RoundCleared as RoundCleared
from r3.protocol.messages import SlotsMoved as SlotsMoved
from r3.protocol.messages import Step as Step
from r3.protocol.messages import Welcome as Welcome
from r3.protocol.wire import _BUFFER_RANGE as _BUFFER_RANGE
from r3.protocol.wire import _CONSUMED as _CONSUMED
from r3.protocol.wire import _FAREWELL as _FAREWELL
from r3.protocol.wire import _HELLO_HEAD as _HELLO_HEAD
from r3.protocol.wire import _I32_MAX as _I32_MAX
from r3.protocol.wire import _I32_MIN as _I32_MIN
from r3.protocol.wire import _LEN as _LEN
from r3.protocol.wire import _STEP as _STEP
from r3.protocol.wire import _U16 as _U16
from r3.protocol.wire import _U64 as _U64
from r3.protocol.wire import ABORTED as ABORTED
from r3.protocol.wire import ADMITTED as ADMITTED
from r3.protocol.wire import ADMITTED_CACHED as ADMITTED_CACHED
from r3.protocol.wire import BACKEND_CUDA as BACKEND_CUDA
from r3.protocol.wire import BACKEND_HOST as BACKEND_HOST
from r3.protocol.wire import CONSUMED as CONSUMED
from r3.protocol.wire import FAILED as FAILED
from r3.protocol.wire import FAILURE_CODES as FAILURE_CODES
from r3.protocol.wire import FAREWELL as FAREWELL
from r3.protocol.wire import FINISHED as FINISHED
from r3.protocol.wire import GOODBYE as GOODBYE
from r3.protocol.wire import HELLO as HELLO
from r3.protocol.wire import MAX_BODY as MAX_BODY
from r3.protocol.wire import REQUEST_ERROR as REQUEST_ERROR
from r3.protocol.wire import REQUEST_ERROR_CODES as REQUEST_ERROR_CODES
from r3.protocol.wire import ROUND_CLEARED as ROUND_CLEARED
from r3.protocol.wire import SLOTS_MOVED as SLOTS_MOVED
from r3.protocol.wire import STEP as STEP
from r3.protocol.wire import STEP_SLOTS as STEP_SLOTS
from r3.protocol.wire import VERSION as VERSION
from r3.protocol.wire import WELCOME as WELCOME
from r3.protocol.wire import ProtocolError as ProtocolError

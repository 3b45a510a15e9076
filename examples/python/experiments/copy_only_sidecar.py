"""An experiment, not a product: the sidecar half of the bridge protocol that launches no kernel in its CUDA context.

Per STEP it only makes its stream wait on ready[b], copies the raw rows and slots of buffer b straight from the
engine's IPC memory into a pinned host ring (copy engine only), records consumed[b] and answers CONSUMED; nothing is
stored. It answers whether the sidecar's pack kernel, time-sliced against the engine's CUDA graph in another context,
is what makes mode d trail mode c at decode (docs/engine-bridge.md). Run by the bench as
``--sidecar-cmd "python3 examples/python/experiments/copy_only_sidecar.py {socket}"``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python", "tests"))

from r3 import protocol  # noqa: E402
from r3.protocol import Goodbye, Hello, Step, Welcome  # noqa: E402

# the driver API bindings of the test sidecar (ctypes over libcuda)
from cuda_sidecar import (CU_EVENT_DISABLE_TIMING, CU_EVENT_INTERPROCESS,  # noqa: E402
                          CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, CU_STREAM_NON_BLOCKING, Handle, cuCtxSetCurrent,
                          cuDeviceGet, cuDevicePrimaryCtxRetain, cuEventCreate, cuEventRecord, cuInit,
                          cuIpcGetEventHandle, cuIpcOpenEventHandle, cuIpcOpenMemHandle, cuMemAllocHost,
                          cuMemcpyDtoHAsync, cuStreamCreate, cuStreamSynchronize, cuStreamWaitEvent, u64, vp)


def main(socket_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)
    conn, _ = listener.accept()
    reader = protocol.FrameReader()

    def frames():
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            yield from reader.feed(data)

    it = frames()
    hello = protocol.decode(next(it))
    assert isinstance(hello, Hello)
    cuInit(0)
    dev, ctx = ctypes.c_int(), vp()
    cuDeviceGet(ctypes.byref(dev), hello.device)
    cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
    cuCtxSetCurrent(ctx)
    mapped: dict[bytes, int] = {}

    def open_memory(handle: bytes) -> int:
        if handle not in mapped:
            ptr = u64()
            cuIpcOpenMemHandle(ctypes.byref(ptr), Handle.from_buffer_copy(handle), CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
            mapped[handle] = ptr.value
        return mapped[handle]

    routing, slots, ready, consumed, handles = [], [], [], [], []
    for b in hello.buffers:
        routing.append(open_memory(b.routing_handle) + b.routing_offset)
        slots.append(open_memory(b.slots_handle) + b.slots_offset)
        e = vp()
        cuIpcOpenEventHandle(ctypes.byref(e), Handle.from_buffer_copy(b.ready_event_handle))
        ready.append(e)
        c = vp()
        cuEventCreate(ctypes.byref(c), CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)
        consumed.append(c)
        h = Handle()
        cuIpcGetEventHandle(ctypes.byref(h), c)
        handles.append(ctypes.string_at(ctypes.byref(h), 64))
    stream = vp()
    cuStreamCreate(ctypes.byref(stream), CU_STREAM_NON_BLOCKING)
    row = hello.layers * hello.top_k * hello.id_bytes
    host_r, host_s = [], []
    for _ in hello.buffers:
        r, s = vp(), vp()
        cuMemAllocHost(ctypes.byref(r), hello.max_tokens * row)
        cuMemAllocHost(ctypes.byref(s), hello.max_tokens * hello.slot_bytes)
        host_r.append(r)
        host_s.append(s)
    conn.sendall(protocol.encode_welcome(Welcome(protocol.VERSION, protocol.BACKEND_CUDA, tuple(handles), "none")))
    steps = tokens = 0
    for body in it:
        msg = protocol.decode(body)
        if isinstance(msg, Step):
            b, n = msg.buffer, msg.tokens
            cuStreamWaitEvent(stream, ready[b], 0)
            if n:
                cuMemcpyDtoHAsync(host_r[b], routing[b], n * row, stream)
                cuMemcpyDtoHAsync(host_s[b], slots[b], n * hello.slot_bytes, stream)
            cuEventRecord(consumed[b], stream)
            conn.sendall(protocol.encode_consumed(msg.step_id, b))
            steps, tokens = steps + 1, tokens + n
        elif isinstance(msg, Goodbye):
            cuStreamSynchronize(stream)
            conn.sendall(protocol.encode_farewell(steps, tokens, 0))
            break
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])

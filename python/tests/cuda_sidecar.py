"""A CUDA sidecar in its own process, for test_cuda_ipc.py: the sidecar half of the protocol on the CUDA driver API
(ctypes over libcuda, no PyTorch), checking what it reads from the engine's buffers.

It opens the engine's memory and ready events by IPC and creates interprocess consumed events, as ``r3 sidecar
--backend cuda`` does. Per STEP it enqueues on its own stream: about 20 ms of memsets (so a missing wait on the
engine's side would let the engine overwrite the buffer before this stream reads it), a wait on ready[b], the copy of
rows [:tokens] into pinned host memory, a record of consumed[b]; then sends CONSUMED at once, without waiting for the
stream. At GOODBYE it synchronizes, checks every step against the pattern the test wrote (value(k, i) below), writes a
JSON verdict to the result file and answers FAREWELL.

Usage: python cuda_sidecar.py SOCKET RESULT_JSON
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from r3 import protocol  # noqa: E402
from r3.protocol import Goodbye, Hello, Step, Welcome  # noqa: E402

CU_EVENT_DISABLE_TIMING = 0x2
CU_EVENT_INTERPROCESS = 0x4
CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 0x1
CU_STREAM_NON_BLOCKING = 0x1
SCRATCH = 1 << 30
MEMSETS = 40


class Handle(ctypes.Structure):
    """A CUDA IPC handle by value. Build it with ``from_buffer_copy``: the c_char field's setter stops at the first NUL."""
    _fields_ = [("reserved", ctypes.c_char * 64)]


cu = ctypes.CDLL("libcuda.so.1")


def fn(name: str, *argtypes):
    f = getattr(cu, name + "_v2", None) if name in ("cuIpcOpenMemHandle", "cuMemAlloc", "cuMemAllocHost",
                                                    "cuMemcpyDtoHAsync", "cuMemsetD8Async") else None
    f = f or getattr(cu, name)
    f.argtypes = list(argtypes)
    f.restype = ctypes.c_int

    def call(*args):
        rc = f(*args)
        if rc != 0:
            raise RuntimeError(f"{name} failed with CUresult {rc}")
    return call


P = ctypes.POINTER
u64, vp = ctypes.c_uint64, ctypes.c_void_p
cuInit = fn("cuInit", ctypes.c_uint)
cuDeviceGet = fn("cuDeviceGet", P(ctypes.c_int), ctypes.c_int)
cuDevicePrimaryCtxRetain = fn("cuDevicePrimaryCtxRetain", P(vp), ctypes.c_int)
cuCtxSetCurrent = fn("cuCtxSetCurrent", vp)
cuIpcOpenMemHandle = fn("cuIpcOpenMemHandle", P(u64), Handle, ctypes.c_uint)
cuIpcCloseMemHandle = fn("cuIpcCloseMemHandle", u64)
cuIpcOpenEventHandle = fn("cuIpcOpenEventHandle", P(vp), Handle)
cuIpcGetEventHandle = fn("cuIpcGetEventHandle", P(Handle), vp)
cuEventCreate = fn("cuEventCreate", P(vp), ctypes.c_uint)
cuEventRecord = fn("cuEventRecord", vp, vp)
cuStreamCreate = fn("cuStreamCreate", P(vp), ctypes.c_uint)
cuStreamWaitEvent = fn("cuStreamWaitEvent", vp, vp, ctypes.c_uint)
cuStreamSynchronize = fn("cuStreamSynchronize", vp)
cuMemAlloc = fn("cuMemAlloc", P(u64), ctypes.c_size_t)
cuMemAllocHost = fn("cuMemAllocHost", P(vp), ctypes.c_size_t)
cuMemcpyDtoHAsync = fn("cuMemcpyDtoHAsync", vp, u64, ctypes.c_size_t, vp)
cuMemsetD8Async = fn("cuMemsetD8Async", u64, ctypes.c_ubyte, ctypes.c_size_t, vp)


def value(step: int, i: int) -> int:
    """The id the test writes at flat index i of step k's routing rows (see test_cuda_ipc.py)."""
    return (step * 7 + i) % 61


def main(socket_path: str, result_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)
    listener.settimeout(120)
    conn, _ = listener.accept()
    conn.settimeout(120)
    reader = protocol.FrameReader()

    def frames():
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            yield from reader.feed(data)

    it = frames()
    hello = protocol.decode(next(it))
    assert isinstance(hello, Hello) and hello.backend == protocol.BACKEND_CUDA, hello
    cuInit(0)
    dev = ctypes.c_int()
    cuDeviceGet(ctypes.byref(dev), hello.device)
    ctx = vp()
    cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
    cuCtxSetCurrent(ctx)
    mapped: dict[bytes, int] = {}  # one mapping per allocation (opening a handle twice fails)

    def open_memory(handle: bytes) -> int:
        assert len(handle) == 64, f"a memory handle of {len(handle)} bytes"
        if handle not in mapped:
            ptr = u64()
            cuIpcOpenMemHandle(ctypes.byref(ptr), Handle.from_buffer_copy(handle), CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
            mapped[handle] = ptr.value
        return mapped[handle]

    routing, slots, ready, consumed, consumed_handles = [], [], [], [], []
    for b in hello.buffers:
        routing.append(open_memory(b.routing_handle) + b.routing_offset)
        slots.append(open_memory(b.slots_handle) + b.slots_offset)
        e = vp()
        cuIpcOpenEventHandle(ctypes.byref(e), Handle.from_buffer_copy(b.ready_event_handle))
        ready.append(e)
        c = vp()
        cuEventCreate(ctypes.byref(c), CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)
        h = Handle()
        cuIpcGetEventHandle(ctypes.byref(h), c)
        consumed.append(c)
        consumed_handles.append(ctypes.string_at(ctypes.byref(h), 64))  # not h.reserved: it stops at a NUL
    stream = vp()
    cuStreamCreate(ctypes.byref(stream), CU_STREAM_NON_BLOCKING)
    scratch = u64()
    cuMemAlloc(ctypes.byref(scratch), SCRATCH)
    conn.sendall(protocol.encode_welcome(Welcome(protocol.VERSION, protocol.BACKEND_CUDA, tuple(consumed_handles),
                                                 "cuda-fake-store")))
    row = hello.layers * hello.top_k * hello.id_bytes
    copies = []  # (step, tokens, routing host pointer, slots host pointer)
    tokens_total = 0
    for body in it:
        msg = protocol.decode(body)
        if isinstance(msg, Step):
            b, n = msg.buffer, msg.tokens
            for _ in range(MEMSETS):
                cuMemsetD8Async(scratch.value, msg.step_id % 256, SCRATCH, stream)
            cuStreamWaitEvent(stream, ready[b], 0)
            host_r, host_s = vp(), vp()
            cuMemAllocHost(ctypes.byref(host_r), max(1, n * row))
            cuMemAllocHost(ctypes.byref(host_s), max(1, n * hello.slot_bytes))
            if n:
                cuMemcpyDtoHAsync(host_r, routing[b], n * row, stream)
                if msg.slots is None:
                    cuMemcpyDtoHAsync(host_s, slots[b], n * hello.slot_bytes, stream)
                else:  # STEP_SLOTS: the slots came in the message
                    ctypes.memmove(host_s, msg.slots, n * hello.slot_bytes)
            cuEventRecord(consumed[b], stream)
            conn.sendall(protocol.encode_consumed(msg.step_id, b))
            copies.append((msg.step_id, n, host_r.value, host_s.value))
            tokens_total += n
        elif isinstance(msg, Goodbye):
            cuStreamSynchronize(stream)
            bad = []
            id_type = ctypes.c_int32 if hello.id_bytes == 4 else ctypes.c_int64
            slot_type = ctypes.c_int32 if hello.slot_bytes == 4 else ctypes.c_int64
            for step, n, hr, hs in copies:
                ids = (id_type * (n * hello.layers * hello.top_k)).from_address(hr)
                got_slots = (slot_type * n).from_address(hs)
                wrong = [i for i, v in enumerate(ids) if v != value(step, i)]
                wrong_slots = [i for i, v in enumerate(got_slots) if v != step * 1000 + i]
                if wrong or wrong_slots:
                    bad.append({"step": step, "wrong_ids": len(wrong), "first": wrong[:3],
                                "seen": [ids[i] for i in wrong[:3]], "wrong_slots": len(wrong_slots)})
            with open(result_path, "w") as f:
                json.dump({"steps": len(copies), "mismatched_steps": bad,
                           "buffers_mapped": len(mapped), "id_bytes": hello.id_bytes}, f)
            conn.sendall(protocol.encode_farewell(len(copies), tokens_total, 0))
            break
    for ptr in mapped.values():
        cuIpcCloseMemHandle(ptr)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

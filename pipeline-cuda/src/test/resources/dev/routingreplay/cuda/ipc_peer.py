"""The engine's half of GpuInterprocessTest: exports a slice of a PyTorch allocation and an interprocess event.

Protocol on stdin/stdout, one JSON object a line. Writes the slice on its own stream behind a long sleep kernel, so a
reader that did not wait on the exported event would see zeros. Then waits on the JVM's event before reading what the
JVM wrote back, and says whether it matched.
"""
import json
import sys

import torch

N = 4096
dev = torch.device("cuda:0")
big = torch.zeros(1 << 20, dtype=torch.int32, device=dev)
view = big[1000:1000 + N]
stream = torch.cuda.Stream()
ready = torch.cuda.Event(interprocess=True)
torch.cuda.synchronize()
with torch.cuda.stream(stream):
    torch.cuda._sleep(400_000_000)
    view.copy_(torch.arange(N, dtype=torch.int32, device=dev) * 7 + 3)
    ready.record(stream)
shared = big.untyped_storage()._share_cuda_()
handle = bytes(shared[1])
print(json.dumps({
    "torch_handle": handle.hex(),
    "storage_offset": int(shared[3]),
    "slice_offset": 1000 * 4,
    "bytes": N * 4,
    "event": bytes(ready.ipc_handle()).hex(),
}), flush=True)
reply = json.loads(sys.stdin.readline())
consumed = torch.cuda.Event.from_ipc_handle(dev, bytes.fromhex(reply["event"]))
reader = torch.cuda.Stream()
reader.wait_event(consumed)
with torch.cuda.stream(reader):
    got = view.clone()
reader.synchronize()
expected = -torch.arange(N, dtype=torch.int32, device=dev)
print(json.dumps({"matched": bool(torch.equal(got, expected))}), flush=True)

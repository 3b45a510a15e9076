"""R3 (rollout routing replay), engine side: hand an inference engine's MoE routing to an ``r3 sidecar``.

``from r3.engine import RoutingCapture, SidecarError``; the wire format is in :mod:`r3.protocol`
(docs/engine-bridge.md). Importing this package needs neither PyTorch nor numpy; the CUDA path imports PyTorch, the
host backend numpy, when a capture is connected.
"""

__version__ = "0.1.0"

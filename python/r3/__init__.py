"""R3 (rollout routing replay) in Python.

- :mod:`r3.engine`: the engine side, ``RoutingCapture`` hands an inference engine's MoE routing to an ``r3 sidecar``
  (docs/engine-bridge.md); :mod:`r3.protocol` is its wire format; :mod:`r3.tap`'s ``RouterTap`` is the router hook
  that writes every MoE layer's ids into the capture's buffer with one stack.
- :mod:`r3.replay`: the trainer side, router replay in the training forward.

Importing this package imports neither PyTorch nor numpy; each module imports what it needs (``r3.engine`` imports
PyTorch only for a CUDA device, numpy only for the host backend).
"""

__version__ = "0.1.0"

"""visiongate: an inference gateway for computer vision, and the export stage that feeds it.

One installed namespace, so nothing collides with a user's own ``service`` or ``export`` module:

- ``visiongate.service``: the gateway (REST, OIP over REST and gRPC, backends, batch scoring)
- ``visiongate.export``: torch -> ONNX export with proofs (needs the ``export`` extra)

The repository keeps the two folders at its top level; ``visiongate/service`` and
``visiongate/export`` are links to them, so the wheel holds ``visiongate/...`` only.
"""

from .service import __version__

__all__ = ["__version__"]

"""medstream data engine: pack de-identified multimodal medical studies into
LMDB+zstd shards and serve ready tensors to trainers over gRPC.

See ``dataengine/README.md`` for the map of modules.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

"""How a served sample travels, and the data channel's wire constants.

``TCP``: inside its gRPC ``Sample`` message (every client; grpcurl too).
``DATA_CHANNEL``: as a frame on a client's TCP data channel, its reference
in the gRPC stream (``OpenDataChannel``; ``server/channel.py``,
``client/_channel.py``). ``SHARED_MEMORY``: written into a slot of a
same-host client's segment, its reference in the gRPC stream
(``AttachSharedMemory``; ``dataengine/shm.py``). These are the names in
``GetStats.transports``, the client's receive stats and the metrics.
"""

from __future__ import annotations

import struct

__all__ = [
    "CHANNEL_MAGIC",
    "DATA_CHANNEL",
    "FINGERPRINT_METADATA",
    "FRAME_HEADER",
    "SHARED_MEMORY",
    "TCP",
    "TOKEN_BYTES",
    "TRANSPORTS",
]

TCP, DATA_CHANNEL, SHARED_MEMORY = "tcp", "data_channel", "shared_memory"
TRANSPORTS = (TCP, DATA_CHANNEL, SHARED_MEMORY)

# Every StreamSamples call states the dataset it serves from in its initial
# metadata under this key: the manifest fingerprint (``DatasetInfo.fingerprint``,
# ``dataengine.prepared.source_fingerprint``). A client checks it before it
# reads the first sample and refuses an engine whose fingerprint differs.
FINGERPRINT_METADATA = "medstream-dataset-fingerprint"

# Data channel: the client sends CHANNEL_MAGIC + a TOKEN_BYTES token, the
# engine answers CHANNEL_MAGIC; then each frame is FRAME_HEADER (slot,
# reserved 0, ticket, size in bytes) followed by `size` bytes.
CHANNEL_MAGIC = b"MEDCHAN1"
TOKEN_BYTES = 16
FRAME_HEADER = struct.Struct("<IIQQ")

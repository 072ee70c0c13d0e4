"""Window buffers: the last W samples of every series, and per-cell model state snapshots."""

from contract.series import series_key
from service.buffer.base import BufferUnavailable, SampleBatch, Samples, WindowBuffer
from service.buffer.memory import MemoryWindowBuffer

__all__ = ["BufferUnavailable", "MemoryWindowBuffer", "SampleBatch", "Samples", "WindowBuffer", "series_key"]
# RedisWindowBuffer: service.buffer.redis_buffer (imported on demand)

"""The capture buffer: one fixed-size ring of records per worker, in shared memory.

Why a ring in shared memory rather than a queue of Python objects:
- **Bytes, not records.** The ring's size is the worker's capture budget
  (SCONEFLOW_CAPTURE_BUFFER_MB). A record that does not fit is refused at once (the caller
  counts it as dropped), so capture can neither block a request nor grow a worker's memory:
  a queue of 6 MB bodies once took a worker past 1 GB.
- **A killed worker loses nothing it answered.** The master maps every ring before it forks
  its workers, so a ring outlives the worker that fills it. A request's record is appended
  before its answer is sent; if the worker is then killed (kill -9, the OOM killer), its
  replacement, which gets the same ring, writes what was left.

Layout of one ring: a header of eight u64 slots, then `capacity` bytes of data. Positions
are byte counts since the ring was made (they never wrap; `% capacity` places them), so
`head - tail` is what is buffered. Each record is a u32 length (LEN) and that many bytes.

    slot 0 head       end of the last whole record (moved after its bytes are in place)
    slot 1 tail       start of the oldest record not yet written to the store
    slot 2 flushing   end of the batch being written, or 0: a replacement writes that batch
                      again, under the same object keys, so it is stored exactly once
    slot 3 written    records written to the store         (counted by the writer thread)
    slot 4 dropped    records refused for want of room      (counted by the request path)
    slot 5 failed     records the store refused three times (the writer thread)

One producer (the worker's event loop) and one consumer (its capture thread), each the only
writer of its own slots; the GIL orders them within the worker, and a fork or a process
death orders them across workers.
"""

from __future__ import annotations

import mmap
import os
import struct

_SLOTS = 8
_HEADER = _SLOTS * 8
HEAD, TAIL, FLUSHING, WRITTEN, DROPPED, FAILED = range(6)
LEN = struct.Struct("<I")  # the length before each record


class Ring:
    """One worker's ring over a shared buffer (see the module docstring)."""

    def __init__(self, buf: memoryview, ring_id: bytes) -> None:
        self.ring_id = ring_id  # unique per ring and server start: seeds keys and eventIds
        self.capacity = len(buf) - _HEADER
        self.slots = buf[:_HEADER].cast("Q")
        self._data = buf[_HEADER:]

    @property
    def used(self) -> int:
        """Bytes buffered and not yet written."""
        return int(self.slots[HEAD] - self.slots[TAIL])

    def append(self, record: bytes) -> int:
        """Queue one record. Returns the bytes buffered after it, or -1 (and nothing
        written) when it does not fit."""
        slots, capacity = self.slots, self.capacity
        head = slots[HEAD]
        size = LEN.size + len(record)
        used = head - slots[TAIL] + size
        if used > capacity:
            return -1
        at = head % capacity
        if at + size <= capacity:  # the common case: no wrap, two writes in place
            LEN.pack_into(self._data, at, len(record))
            self._data[at + LEN.size : at + size] = record
        else:
            self._put(head, LEN.pack(len(record)) + record)
        slots[HEAD] = head + size  # last: a worker killed before this wrote nothing
        return used

    def read(self, start: int, end: int, max_records: int, max_bytes: int) -> list[memoryview]:
        """Whole records from position `start`, stopping at `end`, `max_records` or once
        `max_bytes` are taken (at least one record is taken when there is one).

        A record is a view of the ring's memory where it does not wrap (no copy), so it
        stays valid only while its room is not given back (until the tail passes it)."""
        out: list[memoryview] = []
        data, capacity = self._data, self.capacity
        pos, taken = start, 0
        while pos < end and len(out) < max_records and (not out or taken < max_bytes):
            at = pos % capacity
            if at + LEN.size <= capacity:
                (size,) = LEN.unpack_from(data, at)
            else:
                (size,) = LEN.unpack(self._get(pos, LEN.size))
            at += LEN.size
            if at + size <= capacity:
                out.append(data[at : at + size])
            else:
                out.append(memoryview(self._get(pos + LEN.size, size)))
            pos += LEN.size + size
            taken += size
        return out

    @staticmethod
    def span(records: list[memoryview]) -> int:
        """Bytes of ring that `records` occupy."""
        return sum(LEN.size + len(r) for r in records)

    def _put(self, pos: int, data: bytes) -> None:
        at = pos % self.capacity
        size = len(data)
        if at + size <= self.capacity:
            self._data[at : at + size] = data
            return
        first = self.capacity - at  # wraps: the end of the ring, then its start
        self._data[at:] = data[:first]
        self._data[: size - first] = data[first:]

    def _get(self, pos: int, size: int) -> bytes:
        at = pos % self.capacity
        first = min(size, self.capacity - at)
        if first == size:
            return bytes(self._data[at : at + size])
        return bytes(self._data[at:]) + bytes(self._data[: size - first])


def make_rings(count: int, capacity: int) -> list[Ring]:
    """`count` rings of `capacity` data bytes in one anonymous shared mapping (made before
    the fork, so every worker and its replacements see the same memory). Untouched pages
    cost nothing: a ring's memory grows to its capacity only when traffic fills it."""
    capacity = max(64, capacity)
    size = _HEADER + capacity
    size += -size % 8  # each ring's header stays 8-byte aligned
    mem = mmap.mmap(-1, count * size)  # MAP_SHARED | MAP_ANONYMOUS
    view = memoryview(mem)
    start_id = os.urandom(12)
    return [
        Ring(view[i * size : (i + 1) * size], start_id + i.to_bytes(4, "big"))
        for i in range(count)
    ]

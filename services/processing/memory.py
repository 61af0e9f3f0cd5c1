"""Keeping processing's resident memory near what its jobs need.

glibc gives each thread that contends for the allocator its own arena (up to 8 per core), and
memory freed in one arena is not reused by another: with libvips threads decoding large images
in turn, each arena keeps its high-water mark. Capping the arenas makes the worker threads share
(and reuse) the same few heaps; measured on the 12 MP thumbnail bench load, peak RSS went from
279 to 242 MB with 2 arenas. One arena was measured too, with the trimming below: no gain on
the platform (peak 103-120 MB against 111-113 at 16 callers), and in a model of the jobs alone
the two worker threads queued on its lock and made half the thumbnails a second.

Freed memory inside an arena stays resident all the same: after the uploads of the bench (each
decodes its 12 MP original whole for the full-size variant) the heaps held 70-80 MB nobody used
until the next such job (what a ``malloc_trim`` from a debugger then gave back). ``malloc_trim``
hands those pages back; :class:`Trimmer` calls it when the worker threads fall idle, and only
once resident memory has grown :data:`TRIM_SLACK` past what the last trim left, because a trim
costs the next jobs their page faults again.

All of it is a no-op where the C library is not glibc (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

from shared.logging import get_logger

log = get_logger("darkroom.processing.memory")

#: ``mallopt`` parameter: the most arenas malloc creates (glibc's malloc.h).
_M_ARENA_MAX = -8

#: Growth of resident memory since the last trim that makes the next idle moment trim: more than
#: a run of 300 px thumbnails of 12 MP JPEGs grows it back after a trim (~20 MB on the bench),
#: less than the full-size jobs of a burst of uploads leave (70-80 MB). Measured on the bench's
#: cold thumbnails, one caller at a time (CPU a request is noisy there: 50-60 ms untrimmed): at
#: 16 MB, 2-11 trims in 47 requests, each followed by ~20 MB of page faults, and 58-63 ms; at
#: 24 MB, 0-1 trims and 54-62 ms; at 32 MB the uploads' leftovers stayed in 2 runs of 6
#: (126-129 MB before the load, where 24 MB left 86-113, median 91).
TRIM_SLACK = 24 << 20


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt  # noqa: B018 - present only in glibc
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def limit_arenas(count: int) -> bool:
    """Let malloc create at most ``count`` arenas from now on; False where unsupported."""
    if _LIBC is None:
        return False
    done = bool(_LIBC.mallopt(_M_ARENA_MAX, count))
    log.info("memory.arenas_limited", arenas=count, applied=done)
    return done


def trim() -> None:
    """Return the allocator's free pages to the system (1-6 ms of CPU on a 60-120 MB heap)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class Trimmer:
    """Trims when resident memory has grown ``slack`` bytes past what the last trim left (or
    what there was at the start); thread-safe."""

    def __init__(self, slack: int = TRIM_SLACK) -> None:
        self.slack = slack
        self._lock = threading.Lock()
        self._floor = resident_bytes() or 0

    def __call__(self) -> bool:
        """Trim if memory has grown enough since the last trim; whether it did."""
        if _LIBC is None:
            return False
        with self._lock:
            resident = resident_bytes()
            if resident is None or resident - self._floor < self.slack:
                return False
            trim()
            self._floor = resident_bytes() or 0
        return True

#!/usr/bin/env python3
"""What one journal-style sync costs on this disk: N appends of SIZE bytes,
each followed by fdatasync, into a fresh file, three ways:

  append    the file grows with every write (the journal today)
  keepsize  space reserved ahead with fallocate(FALLOC_FL_KEEP_SIZE)
  zeroed    space written with zeros and synced ahead (the file's size
            does not change, so a sync has no metadata to commit)

Prints the wall time per sync (mean, p50, p99) and the system CPU per
sync. Usage: scripts/sync_probe.py [N] [SIZE] [DIR]   (3000 8192 target)
"""

import ctypes
import os
import resource
import sys
import time

FALLOC_FL_KEEP_SIZE = 1


def probe(mode, n, size, directory):
    path = os.path.join(directory, "sync-probe.bin")
    if os.path.exists(path):
        os.remove(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        room = n * size + 4096
        if mode == "zeroed":
            os.write(fd, b"\0" * room)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        elif mode == "keepsize":
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, ctypes.c_longlong(0), ctypes.c_longlong(room)):
                raise OSError(ctypes.get_errno(), "fallocate")
            os.fsync(fd)
        buf = b"x" * size
        latencies = []
        before = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.remove(path)
    latencies.sort()
    print(
        "%-8s %6d B: %4.0f us a sync (p50 %4.0f, p99 %4.0f), system CPU %3.0f us a sync"
        % (
            mode,
            size,
            wall / n * 1e6,
            latencies[n // 2] * 1e6,
            latencies[int(n * 0.99)] * 1e6,
            (after.ru_stime - before.ru_stime) / n * 1e6,
        )
    )


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    directory = sys.argv[3] if len(sys.argv) > 3 else "target"
    os.makedirs(directory, exist_ok=True)
    # Interleaved, twice: the VM's speed drifts.
    for _ in range(2):
        for mode in ("append", "keepsize", "zeroed"):
            probe(mode, n, size, directory)


if __name__ == "__main__":
    main()

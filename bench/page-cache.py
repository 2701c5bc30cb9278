#!/usr/bin/env python3
"""Cost of writing share-sized files through the page cache vs with O_DIRECT.

Ten threads each write an 85 MiB file in 512 KiB pwrites and fsync it, like ten storage
servers receiving the shares of a 256 MiB upload; prints MB/s and the CPU time spent.

  bench/page-cache.py buffered|direct [--keep] [DIR]

--keep leaves the files in place (a storage server keeps its shares, so its page cache grows
into fresh memory); without it they are deleted, and the next run reuses their pages.
DIR defaults to a directory under /tmp (must not be tmpfs for the direct mode to mean much).
"""
import mmap, os, resource, sys, threading, time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
if not args or args[0] not in ("buffered", "direct"):
    sys.exit(__doc__)
mode, keep = args[0], "--keep" in sys.argv
d = args[1] if len(args) > 1 else "/tmp/lafs-page-cache-bench"
os.makedirs(d, exist_ok=True)
CHUNK, PER_FILE = 512 << 10, (85 << 20) // (512 << 10)
buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs
buf.write(os.urandom(CHUNK))
paths = [os.path.join(d, f"share{i}-{time.time_ns()}") for i in range(10)]

def write(path):
    flags = os.O_CREAT | os.O_WRONLY | (os.O_DIRECT if mode == "direct" else 0)
    fd = os.open(path, flags, 0o600)
    for j in range(PER_FILE):
        os.pwrite(fd, buf, j * CHUNK)
        if mode == "buffered" and j % 8 == 7:  # start writeback every 4 MiB, as lafs does
            os.posix_fadvise(fd, (j - 7) * CHUNK, 8 * CHUNK, os.POSIX_FADV_DONTNEED)
    os.fsync(fd)
    os.close(fd)

t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
threads = [threading.Thread(target=write, args=(p,)) for p in paths]
for t in threads:
    t.start()
for t in threads:
    t.join()
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.time() - t0
print(f"{mode}{' --keep' if keep else ''}: {10 * PER_FILE * CHUNK / wall / 1e6:.0f} MB/s, "
      f"user {r1.ru_utime - r0.ru_utime:.2f} s, system {r1.ru_stime - r0.ru_stime:.2f} s")
if not keep:
    for p in paths:
        os.unlink(p)

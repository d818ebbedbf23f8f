"""Process memory from /proc, for the memory guard (its own worker) and the Celery exporter
(the pool's children)."""

import os

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set size: the second field of /proc/<pid>/statm, in pages.
    OSError once the process is gone."""
    # Opened each time: a descriptor kept open across fork would still read the parent's file.
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE

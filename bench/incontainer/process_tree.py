"""(master, children) of the processes whose command line has every one of `words`, from /proc
of the container the script runs in."""

import os
from pathlib import Path


def process_tree(*words: str) -> tuple[int, list[int]]:
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        # PID 1 is docker-init ("/sbin/docker-init -- gunicorn ..."), not the master.
        if all(word in cmd for word in words) and "docker-init" not in cmd:
            procs[int(pid)] = ppid
    master = next(pid for pid, ppid in procs.items() if ppid not in procs)
    return master, sorted(pid for pid, ppid in procs.items() if ppid == master)

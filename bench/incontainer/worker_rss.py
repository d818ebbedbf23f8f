"""The soak's sample, inside a web or Celery container: PID 1 is docker-init, its child the
Gunicorn or Celery master, whose children are the workers. RSS from /proc/<pid>/status, as one
JSON line."""

import json
import os
from pathlib import Path

parent, rss = {}, {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        continue
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    parent[int(pid)] = ppid
    rss[int(pid)] = int(fields.get("VmRSS", "0 kB").split()[0])
masters = [pid for pid, ppid in parent.items() if ppid == 1]
master = min(masters) if masters else None
workers = {pid: rss[pid] for pid, ppid in parent.items() if ppid == master}
print(json.dumps({"master_kb": rss.get(master, 0) if master else 0, "workers_kb": workers}))

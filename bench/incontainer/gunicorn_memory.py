"""Scenario 5, inside web: RSS, PSS and USS of the Gunicorn master and of each worker, as one
JSON line."""

import json
from pathlib import Path

from process_tree import process_tree  # inlined: bench/incontainer/__init__.py


def rollup(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return {
        "rss_kb": fields["Rss"],
        "pss_kb": fields["Pss"],
        "uss_kb": fields["Private_Clean"] + fields["Private_Dirty"],
    }


master, children = process_tree("gunicorn")
workers = [rollup(pid) for pid in children]
print(json.dumps({"master": rollup(master), "workers": workers}))

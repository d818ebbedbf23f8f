"""RSS, PSS and USS of a process in kB, from /proc/<pid>/smaps_rollup of the container the
script runs in."""

from pathlib import Path


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

"""Scenario 7, inside worker-reports (Django and /proc of the Celery pool are both there): asks
for one report over the whole seeded year and, while the pool child builds it, samples the
child's memory. Peak = VmHWM, the kernel's own high-water mark of the child's resident set,
reset (clear_refs 5) just before the report starts: it catches a spike between samples, which
polling VmRSS cannot. Polled VmRSS (every 20 ms) is kept beside it as a cross-check.
Arguments: the order count expected, a label. Prints one JSON line."""

import contextlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import django
from process_tree import process_tree  # inlined: bench/incontainer/__init__.py

sys.path.insert(0, "/app")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
# After django.setup(): the models need the app registry.
from django.contrib.auth import get_user_model  # noqa: E402
from django.utils import timezone  # noqa: E402

from core.db_router import PRIMARY, REPLICA  # noqa: E402
from reports.services import report_create  # noqa: E402
from shop.models import Order  # noqa: E402

EXPECTED, LABEL = int(sys.argv[1]), sys.argv[2]


def status(pid: int) -> dict[str, list[str]]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def children() -> list[int]:
    # The prefork pool: the Celery master's children.
    return process_tree("celery", "worker")[1]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# The replica serves the report: wait until it has every order the primary has.
deadline = time.monotonic() + 300
while Order.objects.using(REPLICA).count() < Order.objects.using(PRIMARY).count():
    if time.monotonic() > deadline:
        raise SystemExit("replica did not catch up within 300 s")
    time.sleep(0.5)
pids = children()
reset = True
for pid in pids:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError:
        reset = False
before = {pid: (int(status(pid)["VmRSS"][0]), cpu_ticks(pid)) for pid in pids}
# A shop-wide report (every seeded order) is staff's to ask for.
owner, _ = (
    get_user_model()
    .objects.using(PRIMARY)
    .update_or_create(username="bench-reports", defaults={"is_staff": True})
)
today = timezone.now().date()
created = time.monotonic()
report = report_create(
    owner=owner, date_from=today - timedelta(days=365), date_to=today, shop_wide=True
)
sampled = dict.fromkeys(pids, 0)
samples = 0
next_poll = 0.0
limit = time.monotonic() + 600
while True:
    for pid in pids:
        with contextlib.suppress(OSError):
            sampled[pid] = max(sampled[pid], int(status(pid)["VmRSS"][0]))
    samples += 1
    now = time.monotonic()
    if now >= next_poll:
        report.refresh_from_db()
        if report.state in ("done", "failed"):
            break
        next_poll = now + 0.2
    if now > limit:
        raise SystemExit("report not finished within 600 s")
    time.sleep(0.02)
wall = time.monotonic() - created
after: dict[int, tuple[int, int, int] | None] = {}
for pid in pids:
    try:
        after[pid] = (int(status(pid)["VmHWM"][0]), int(status(pid)["VmRSS"][0]), cpu_ticks(pid))
    except OSError:
        after[pid] = None  # recycled (max_memory_per_child) before it could be read
# The child that ran it is the one that spent the CPU.
ran = max(pids, key=lambda pid: (after[pid] or (0, 0, 0))[2] - before[pid][1])
hwm, rss_end, ticks = after[ran] or (None, None, None)
started, finished = report.started_at, report.finished_at
print(
    json.dumps(
        {
            "label": LABEL,
            "orders_expected": EXPECTED,
            "order_count": report.order_count,
            "state": report.state,
            "error": report.error,
            "seconds": (finished - started).total_seconds() if started and finished else None,
            # The child's own CPU time (user + system): what the report cost the worker, which
            # the other loads on a shared machine stretch far less than the wall time.
            "cpu_seconds": (ticks - before[ran][1]) / os.sysconf("SC_CLK_TCK") if ticks else None,
            "wall_seconds": round(wall, 2),
            "child_pid": ran,
            "pool_children": len(pids),
            "hwm_reset": reset,
            "peak_rss_kb": hwm,
            "sampled_peak_rss_kb": sampled[ran],
            "rss_before_kb": before[ran][0],
            "rss_after_kb": rss_end,
            "samples": samples,
            "child_recycled": after[ran] is None,
        }
    )
)

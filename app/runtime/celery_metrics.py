"""A Celery worker's own small exporter: the resident memory of its processes, for Prometheus.

Flower (the monitoring profile's Celery source) reports workers online, task outcomes and run
times, but not memory. So each worker's main process serves, on CELERY_METRICS_PORT (0: off),
the RSS of itself and of every pool child, read from /proc at scrape time, next to the limit a
child is recycled at (CELERY_MAX_MEMORY_PER_CHILD_MB). config/celery.py starts it when the
worker is ready; beat and the web never do. Alerts: CeleryWorkerMemoryHigh, WorkerMemoryGrowing
(monitoring/rules/alerts.yml).

The worker that mounts the media volume at MEDIA_ROOT also serves that volume's
size and use, read with statvfs at scrape time: the report CSVs fill it, and node-exporter sees a
Kubernetes volume or a Docker volume only as part of some other filesystem, if at all. Alert:
MediaVolumeAlmostFull.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime import procfs

log = logging.getLogger(__name__)


def rss_bytes(pid: int) -> int | None:
    """A pool process's resident set size; None once it is gone."""
    try:
        return procfs.rss_bytes(pid)
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


class MemoryCollector(Collector):
    def __init__(self, *, limit_bytes: int, pid: int | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.pid = pid or os.getpid()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rss = GaugeMetricFamily(
            "celery_worker_rss_bytes",
            "Resident memory of the Celery worker's processes (main, and each pool child).",
            labels=["pid", "process"],
        )
        for pid, kind in [(self.pid, "main"), *((c, "child") for c in children(self.pid))]:
            value = rss_bytes(pid)
            if value is not None:
                rss.add_metric([str(pid), kind], value)
        yield rss
        yield GaugeMetricFamily(
            "celery_worker_memory_limit_bytes",
            "CELERY_MAX_MEMORY_PER_CHILD_MB in bytes: a child above it is replaced after its task.",
            value=self.limit_bytes,
        )


class MediaVolumeCollector(Collector):
    """The filesystem holding `path`: its size, what is used, and what the worker may still
    write (root's reserved blocks excluded, as in node-exporter's avail)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = os.statvfs(self.path)
        except OSError:
            # The volume gone or unreadable: no sample, so the alert goes quiet rather than
            # wrong, and the scrape of the memory metrics still succeeds.
            log.warning("media volume at %s unreadable", self.path, exc_info=True)
            return
        block = stats.f_frsize
        labels = ["path"]
        for name, help_text, value in (
            ("media_volume_size_bytes", "Size of the media volume (report CSVs).", stats.f_blocks),
            (
                "media_volume_used_bytes",
                "Bytes used on the media volume.",
                stats.f_blocks - stats.f_bfree,
            ),
            (
                "media_volume_avail_bytes",
                "Bytes the worker may still write to the media volume.",
                stats.f_bavail,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=labels)
            family.add_metric([self.path], value * block)
            yield family


def registry(*, limit_mb: int, media_root: str | None = None) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(MemoryCollector(limit_bytes=limit_mb * 1024 * 1024))
    # Only where a volume is mounted there (worker-reports): the other workers' MEDIA_ROOT is a
    # directory of their image, whose filesystem is not the volume's.
    if media_root and os.path.ismount(media_root):
        found.register(MediaVolumeCollector(media_root))
    return found


def start(**kwargs: Any) -> None:
    """celery.signals.worker_ready receiver: serve the metrics from this (the main) process."""
    from django.conf import settings  # configured by the time the worker is ready

    port = settings.CELERY_METRICS_PORT
    if port <= 0:
        return
    # Celery's own limit, the same setting (KiB): one definition of the default.
    limit_mb = settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD // 1024
    media_root = str(settings.MEDIA_ROOT)
    start_http_server(port, registry=registry(limit_mb=limit_mb, media_root=media_root))
    log.info("celery metrics on :%d/metrics", port)

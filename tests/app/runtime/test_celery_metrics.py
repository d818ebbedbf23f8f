"""The Celery worker's small exporter (runtime/celery_metrics.py): resident memory of the worker's
main process and each of its children, read from /proc, next to the per-child limit."""

import os
import socket
import subprocess
import sys
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtime import celery_metrics


def samples(registry) -> list:
    text = generate_latest(registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_main_process_and_each_child_with_the_limit():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        found = samples(celery_metrics.registry(limit_mb=200))
        rss = {s.labels["pid"]: s for s in found if s.name == "celery_worker_rss_bytes"}
        assert rss[str(child.pid)].labels["process"] == "child"
        assert rss[str(child.pid)].value > 0
        main = [s for s in rss.values() if s.labels["process"] == "main"]
        assert len(main) == 1
        assert main[0].value > 0
        (limit,) = [s for s in found if s.name == "celery_worker_memory_limit_bytes"]
        assert limit.value == 200 * 1024 * 1024
    finally:
        child.kill()
        child.wait()


def test_a_process_gone_is_skipped_not_an_error():
    assert celery_metrics.rss_bytes(2**22 + 1) is None


def test_served_over_http_when_started(settings):
    with socket.socket() as probe:  # a free port on this (possibly shared) machine
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CELERY_METRICS_PORT = port
    settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD = 300 * 1024  # KiB, as Celery counts
    celery_metrics.start()
    url = f"http://127.0.0.1:{port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "celery_worker_rss_bytes" in body
    # The limit Celery recycles a child at, from the one setting both read.
    (limit,) = [
        line for line in body.splitlines() if line.startswith("celery_worker_memory_limit_bytes ")
    ]
    assert float(limit.split()[1]) == 300 * 1024 * 1024


def media_samples(path) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(celery_metrics.MediaVolumeCollector(str(path)))
    return {s.name: s.value for s in samples(registry) if s.labels["path"] == str(path)}


def test_the_media_volumes_size_and_use_are_its_filesystems(tmp_path):
    before = media_samples(tmp_path)
    assert set(before) == {
        "media_volume_size_bytes",
        "media_volume_used_bytes",
        "media_volume_avail_bytes",
    }
    assert 0 < before["media_volume_avail_bytes"] <= before["media_volume_size_bytes"]
    assert 0 < before["media_volume_used_bytes"] < before["media_volume_size_bytes"]
    # What statvfs says of the same filesystem, in bytes (the real filesystem, not a stand-in;
    # the stack test shows a file moving the numbers on a volume of its own).
    stats = os.statvfs(tmp_path)
    assert before["media_volume_size_bytes"] == stats.f_blocks * stats.f_frsize


def test_the_media_volume_is_exported_only_where_one_is_mounted(tmp_path):
    names = {s.name for s in samples(celery_metrics.registry(limit_mb=200, media_root="/"))}
    assert "media_volume_used_bytes" in names
    # A plain directory (MEDIA_ROOT in a worker without the volume) is not the volume.
    names = {
        s.name for s in samples(celery_metrics.registry(limit_mb=200, media_root=str(tmp_path)))
    }
    assert not names & {"media_volume_used_bytes", "media_volume_size_bytes"}
    # Gone: no sample and no error, the memory metrics still served.
    assert media_samples(tmp_path / "missing") == {}

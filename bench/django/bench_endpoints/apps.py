from typing import Any

from django.apps import AppConfig
from django.conf import settings


class BenchEndpointsConfig(AppConfig):
    name = "bench_endpoints"

    def ready(self) -> None:
        # bench_settings' own setting: the product's settings have none.
        if not getattr(settings, "METRICS_ENABLED", True):
            metrics_off()


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def metrics_off() -> None:
    """Nothing recorded (requests, queries, cache) while /metrics still answers: the
    observability scenario's "off" row, which measures what recording costs. The product has no
    such switch, so its recorders are replaced here, in the modules that call them."""
    from django.db.backends.signals import connection_created

    from core import metrics
    from runtime import metrics as worker_metrics

    # Every caller reaches these through their module (tests/bench/test_metrics_switch.py).
    metrics.observe_request = _nothing
    worker_metrics.refresh_worker_memory = _nothing
    worker_metrics.observe_request_threads = _nothing
    metrics.observe_cache = _nothing
    metrics.count_cache_get = _nothing
    connection_created.disconnect(dispatch_uid="core.metrics.query_timer")

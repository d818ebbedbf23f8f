"""`make bench` only: bench_endpoints.asgi around the Django handlers runtime.asgi's is compared
with in scenario 1, side by side in the same run:

- stock: Django's own ASGIHandler (a new single-thread executor and a joining thread per
  request, every sync middleware method a thread hop).
- hops: runtime.asgi's pooled executors, with Django's middleware hopping threads as stock does.

config.asgi's handler (bench_endpoints.asgi:application) is both: pooled and inline.
"""

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

from bench_endpoints.asgi import serving
from runtime.asgi import PooledExecutorASGIHandler


class _PooledWithHops(PooledExecutorASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django's own chain, not runtime.asgi's inline one: each sync method a thread hop.
        BaseHandler.load_middleware(self, is_async)


stock = serving(ASGIHandler())
hops = serving(_PooledWithHops())

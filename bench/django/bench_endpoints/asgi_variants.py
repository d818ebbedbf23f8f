"""`make bench` only: bench_endpoints.asgi around the Django handlers core.asgi's is compared
with in scenario 1, side by side in the same run:

- stock: Django's own ASGIHandler (a new single-thread executor and a joining thread per
  request, every sync middleware method a thread hop).
- hops: core.asgi's pooled executors, with Django's middleware hopping threads as stock does.

config.asgi's handler (bench_endpoints.asgi:application) is both: pooled and inline.
"""

from django.core.handlers.asgi import ASGIHandler

from bench_endpoints.asgi import serving
from core.asgi import PooledExecutorASGIHandler


class _PooledWithHops(PooledExecutorASGIHandler):
    inline_middleware = False


stock = serving(ASGIHandler())
hops = serving(_PooledWithHops())

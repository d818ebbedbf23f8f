"""`make bench` only: bench_endpoints.asgi with Django's stock ASGIHandler (a new single-thread
executor and a joining thread per request) in place of core.asgi's pooled handler, so scenario 1
measures what the pooled handler changed, side by side with it in the same run."""

from django.core.handlers.asgi import ASGIHandler

from bench_endpoints import asgi as _bench

# Read at call time by bench_endpoints.asgi.application for every path that is not /bench/raw/.
vars(_bench)["django_application"] = ASGIHandler()
application = _bench.application

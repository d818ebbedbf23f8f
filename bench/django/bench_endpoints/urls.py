from importlib.util import find_spec

from django.urls import URLPattern, path

from bench_endpoints import views

urlpatterns: list[URLPattern] = [
    path("fanout/async", views.fanout_async),
    path("fanout/async-new-client", views.fanout_async_new_client),
    path("fanout/sequential", views.fanout_sequential),
    path("fanout/sync", views.fanout_sync),
    path("cpu", views.cpu_bound),
    path("mixed", views.mixed),
    path("products/uncached", views.product_list_uncached),
]

# httpx is in the bench image only (Dockerfile target "bench"); elsewhere these paths are 404s,
# which the harness counts as failed requests.
if find_spec("httpx") is not None:
    urlpatterns += [
        path("fanout/async-httpx", views.fanout_async_httpx),
        path("fanout/async-httpx-new-client", views.fanout_async_httpx_new_client),
    ]

import os

from django.contrib import admin
from django.urls import include, path

from config.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]

# `make bench` only (bench/compose.bench.yml sets it): endpoints a deployment never routes.
if os.environ.get("BENCH_ENDPOINTS", "").lower() == "true":
    urlpatterns.append(path("bench/", include("bench_endpoints.urls")))

# The stack's fault suite only (tests/stack/test_faults.py recreates web with it): a slow, a
# hanging and a leaking view. Never set in a deployment.
if os.environ.get("FAULT_ENDPOINTS", "").lower() == "true":
    urlpatterns.append(path("faults/", include("faults.urls")))

handler400 = "core.errors.bad_request"
handler403 = "core.errors.permission_denied"
handler404 = "core.errors.not_found"
handler500 = "core.errors.server_error"

import os

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import URLPattern, URLResolver, include, path

from config.api import api

urlpatterns: list[URLPattern | URLResolver] = [
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

# `make dev` (DEBUG, config/settings.py): the Debug Toolbar's views, and static files served by
# Django from the packages and apps themselves (no collectstatic after an edit);
# staticfiles_urlpatterns() is empty while DEBUG is off.
if settings.DEBUG_TOOLBAR:
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += debug_toolbar_urls()
urlpatterns += staticfiles_urlpatterns()

handler400 = "core.errors.bad_request"
handler403 = "core.errors.permission_denied"
handler404 = "core.errors.not_found"
handler500 = "core.errors.server_error"

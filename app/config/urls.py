"""The product's URLs, the same in every deployment: test-only endpoints (the fault tests',
tests/stack/faultapp/fault_urls.py) are added by their own settings modules, in images a
deployment never runs."""

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import URLPattern, URLResolver, path

from config.api import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]

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

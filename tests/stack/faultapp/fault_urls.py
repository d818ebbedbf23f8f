"""The product's URLs plus /faults/ (fault_settings.ROOT_URLCONF)."""

from django.urls import URLPattern, URLResolver, include, path

from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as product

urlpatterns: list[URLPattern | URLResolver] = [
    *product,
    path("faults/", include("faults.urls")),
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

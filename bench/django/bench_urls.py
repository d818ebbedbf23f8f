"""The product's URLs plus /bench/ (bench_settings.ROOT_URLCONF)."""

from django.urls import URLPattern, URLResolver, include, path

from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as product

urlpatterns: list[URLPattern | URLResolver] = [
    *product,
    path("bench/", include("bench_endpoints.urls")),
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

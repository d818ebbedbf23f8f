from django.urls import path

from bench_endpoints import views

urlpatterns = [
    path("fanout/async", views.fanout_async),
    path("fanout/async-new-client", views.fanout_async_new_client),
    path("fanout/sync", views.fanout_sync),
]

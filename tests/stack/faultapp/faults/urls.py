from django.urls import path

from faults import views

urlpatterns = [
    path("slow", views.slow),
    path("hang", views.hang),
    path("hang-sync", views.hang_sync),
    path("block", views.block),
    path("leak", views.leak),
    path("query", views.query),
    path("write-late", views.write_late),
    path("write-after", views.write_after),
]

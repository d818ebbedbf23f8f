from django.urls import path

from faults import views

urlpatterns = [
    path("slow", views.slow),
    path("hang", views.hang),
    path("leak", views.leak),
]

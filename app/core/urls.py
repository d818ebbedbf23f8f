from django.urls import path

from core import views

urlpatterns = [
    path("tasks", views.task_create, name="task-create"),
    path("tasks/<str:task_id>", views.task_detail, name="task-detail"),
]

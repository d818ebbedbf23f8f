from django.urls import path

from shop import views

urlpatterns = [
    path("products", views.product_create, name="product-create"),
    path("products/<int:product_id>", views.product_detail, name="product-detail"),
]

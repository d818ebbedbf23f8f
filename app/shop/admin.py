from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from core.admin import ModelAdmin, ReadOnlyAdmin
from shop.models import Order, OrderItem, Product
from shop.services import product_create, product_update

if TYPE_CHECKING:
    _TabularInline = admin.TabularInline[OrderItem, Order]
else:
    _TabularInline = admin.TabularInline


class ProductForm(forms.ModelForm):  # type: ignore[type-arg]
    """Carries the stock the editor saw (hidden). Orders take stock while the page is open, and
    Django compares a submitted form with the row as it is at save time: a stale count would
    read as a change and be written back as a stock-take, undoing the sales. So the stock
    counts as changed only if the editor changed it from what they saw, and then only if no
    order moved it meanwhile (the stock version)."""

    seen_stock = forms.IntegerField(widget=forms.HiddenInput, required=False)
    seen_stock_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Product
        fields = ("name", "description", "price", "stock", "hot")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["seen_stock"].initial = self.instance.stock
            self.fields["seen_stock_version"].initial = self.instance.stock_version

    def stock_changed_by_editor(self) -> bool:
        if self.instance.pk is None or "stock" not in self.changed_data:
            return "stock" in self.changed_data
        return bool(self.cleaned_data.get("stock") != self.cleaned_data.get("seen_stock"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        seen_version = data.get("seen_stock_version")
        if (
            self.instance.pk is not None
            and self.stock_changed_by_editor()
            and seen_version != self.instance.stock_version
        ):
            raise forms.ValidationError(
                "Orders changed the stock since this page was opened (it is %(now)s now): "
                "reload the page and set it again.",
                code="stale_stock",
                params={"now": self.instance.stock},
            )
        return data


@admin.register(Product)
class ProductAdmin(ModelAdmin[Product]):
    """Saved through the services, like the API's writes: the row locked, only the changed
    fields written, the stock version bumped and the cached pages dropped. Never deleted here:
    orders keep their products."""

    list_display = ("id", "name", "price", "stock", "hot", "updated_at")
    list_filter = ("hot", "created_at")
    search_fields = ("name",)
    form = ProductForm
    fields = (
        "name",
        "description",
        "price",
        "stock",
        "hot",
        "stock_version",
        "updated_at",
        "seen_stock",
        "seen_stock_version",
    )
    readonly_fields = ("stock_version", "updated_at")

    def save_model(
        self, request: HttpRequest, obj: Product, form: ModelForm[Product], change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            # `stock` here is a stock-take: the count set outright (shop.services).
            stale = {"seen_stock", "seen_stock_version"}
            if isinstance(form, ProductForm) and not form.stock_changed_by_editor():
                stale.add("stock")  # what the editor saw, not a count they set
            changed = {name: data[name] for name in form.changed_data if name not in stale}
            saved = product_update(product_id=obj.pk, **changed)
        else:
            saved = product_create(
                name=data["name"],
                price=data["price"],
                stock=data["stock"],
                description=data["description"],
                hot=data["hot"],
            )
        # The admin goes on with `obj` (its log entry, the redirect): make it the saved row.
        obj.pk, obj._state = saved.pk, saved._state
        obj.stock_version, obj.updated_at = saved.stock_version, saved.updated_at

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderItemInline(_TabularInline):
    model = OrderItem
    fields = ("product", "product_name", "quantity", "unit_price")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin[Order]):
    # Placed only by order_create (stock locked and taken, the confirmation in the outbox).
    list_display = ("id", "customer", "status", "total", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("=id", "customer__username", "customer__email", "=idempotency_key")
    list_select_related = ("customer",)
    inlines = (OrderItemInline,)
    # The orders table grows without bound: no second count(*) of all of it for every page.
    show_full_result_count = False


@admin.register(OrderItem)
class OrderItemAdmin(ReadOnlyAdmin[OrderItem]):
    list_display = ("id", "order", "product", "product_name", "quantity", "unit_price")
    list_filter = ("order__status",)
    search_fields = ("=order__id", "product_name")
    list_select_related = ("order", "product")
    show_full_result_count = False

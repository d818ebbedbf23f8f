from decimal import Decimal

from django import forms
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.errors import allow_methods, error_response
from core.validation import InvalidInput, json_body, validated
from shop import selectors, services


class ProductCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=5000)
    price = forms.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0"))
    stock = forms.IntegerField(min_value=0, max_value=2**31 - 1)


@csrf_exempt
@allow_methods("POST")
def product_create(request: HttpRequest) -> JsonResponse:
    try:
        data = validated(ProductCreateForm, json_body(request))
    except InvalidInput as exc:
        return exc.response
    product = services.product_create(**data)
    return JsonResponse(selectors.product_to_dict(product=product), status=201)


@allow_methods("GET")
def product_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    product = selectors.product_get(product_id=product_id)
    if product is None:
        return error_response(404, "not_found", f"No product {product_id}.")
    return JsonResponse(selectors.product_to_dict(product=product))

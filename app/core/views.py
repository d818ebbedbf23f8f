import uuid

from celery.result import AsyncResult
from django import forms
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from core.errors import allow_methods, error_response
from core.tasks import add
from core.validation import InvalidInput, json_body, validated

_INT_LIMIT = 2**53  # Exact in every JSON parser.


class AddForm(forms.Form):
    a = forms.IntegerField(min_value=-_INT_LIMIT, max_value=_INT_LIMIT)
    b = forms.IntegerField(min_value=-_INT_LIMIT, max_value=_INT_LIMIT)


@csrf_exempt
@allow_methods("POST")
def task_create(request: HttpRequest) -> JsonResponse:
    try:
        data = validated(AddForm, json_body(request))
    except InvalidInput as exc:
        return exc.response
    result = add.delay(data["a"], data["b"])
    status_url = reverse("task-detail", kwargs={"task_id": result.id})
    return JsonResponse({"id": result.id, "status_url": status_url}, status=202)


@allow_methods("GET")
def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    try:
        uuid.UUID(task_id)
    except ValueError:
        return error_response(404, "not_found", "No task with that id.")
    result: AsyncResult[int] = AsyncResult(task_id)
    body: dict[str, object] = {"id": task_id, "state": result.state}
    if result.successful():
        body["result"] = result.result
    return JsonResponse(body)

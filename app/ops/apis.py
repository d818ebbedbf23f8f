"""A Celery round trip: enqueue a task, read its state. The smallest proof the queue works."""

import uuid
from typing import Annotated, Any

from celery.result import AsyncResult
from django.http import HttpRequest
from django.urls import reverse
from kombu.exceptions import OperationalError as KombuOperationalError
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BeforeValidator
from redis.exceptions import RedisError

from accounts.auth import staff_auth
from core.errors import DomainError
from core.schemas import InputSchema, errors, json_integer
from ops.tasks import add

router = Router(tags=["tasks"])


class QueueUnavailable(DomainError):
    status = 503
    code = "queue_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


_INT_LIMIT = 2**53  # exact in every JSON parser
Addend = Annotated[int, Field(ge=-_INT_LIMIT, le=_INT_LIMIT), BeforeValidator(json_integer)]


class AddIn(InputSchema):
    a: Addend
    b: Addend


class TaskCreated(Schema):
    id: str
    status_url: str


class TaskOut(Schema):
    id: str
    state: str
    result: int | None = None


# Staff only: the task runs on the default queue, which also carries reports.sweep; anyone else
# could flood it and hold the sweeper back (tests/stack/test_celery.py is the round trip).
@router.post("/tasks", auth=staff_auth, response={202: TaskCreated, **errors(400, 401, 403, 503)})
def task_create(request: HttpRequest, payload: AddIn) -> Status[Any]:
    try:
        result = add.delay(payload.a, payload.b)
    except (KombuOperationalError, RedisError, RuntimeError) as exc:
        # Celery's result consumer wraps a result store it could not reach in a RuntimeError.
        if isinstance(exc, RuntimeError) and not isinstance(exc.__cause__, RedisError):
            raise
        raise QueueUnavailable("The task queue is unavailable; retry shortly.") from exc
    return Status(
        202, {"id": result.id, "status_url": reverse("api:task_detail", args=[result.id])}
    )


@router.get("/tasks/{task_id}", response={200: TaskOut, **errors(404)}, url_name="task_detail")
def task_detail(request: HttpRequest, task_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(task_id)
    except ValueError as exc:
        raise HttpError(404, "No task with that id.") from exc
    result: AsyncResult[int] = AsyncResult(task_id)
    body: dict[str, Any] = {"id": task_id, "state": result.state}
    if result.successful():
        body["result"] = result.result
    return body

"""A Celery round trip: enqueue a task, read its state. The smallest proof the queue works. And a
worker's memory growth over a window, to find a leak in a running process."""

import uuid
from typing import Annotated, Any

from celery.result import AsyncResult
from django.http import HttpRequest
from django.urls import reverse
from kombu.exceptions import OperationalError as KombuOperationalError
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BeforeValidator
from redis.exceptions import RedisError

from accounts.auth import staff_auth
from core.errors import DomainError
from core.schemas import InputSchema, errors, json_integer
from ops import memory
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


# Staff only, as its creation: a task's state and result are not anyone's to poll.
@router.get(
    "/tasks/{task_id}",
    auth=staff_auth,
    response={200: TaskOut, **errors(401, 403, 404)},
    url_name="task_detail",
)
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


class MemoryGrowthQuery(Schema):
    seconds: float = Field(10, ge=memory.MIN_SECONDS, le=memory.MAX_SECONDS)
    limit: int = Field(10, ge=memory.MIN_LIMIT, le=memory.MAX_LIMIT)


class GrowthEntryOut(Schema):
    file: str
    line: int
    code: str
    size_diff: int = Field(description="Bytes allocated at this line in the window, still held.")
    count_diff: int = Field(description="Blocks allocated at this line in the window, still held.")
    size: int = Field(description="Bytes held that this line allocated since tracing started.")


class MemoryGrowthOut(Schema):
    host: str = Field(description="The host name of the measured worker's container (pod).")
    pid: int = Field(description="The measured worker's process id.")
    seconds: float
    total_size_diff: int
    top: list[GrowthEntryOut]


# Staff only: the answer names the code's files and lines, and tracing slows the whole worker
# for the window.
@router.get(
    "/ops/memory-growth",
    auth=staff_auth,
    response={200: MemoryGrowthOut, **errors(400, 401, 403, 409)},
    tags=["ops"],
    description="Traces this worker's allocations (tracemalloc) for `seconds` and answers the "
    "`limit` lines whose still-held allocations grew most. The request lands on one worker: "
    "repeat it to sample others. 409 while another measurement runs in the same worker.",
)
async def memory_growth(
    request: HttpRequest, query: Query[MemoryGrowthQuery]
) -> memory.MemoryGrowth:
    return await memory.memory_growth_measure(seconds=query.seconds, limit=query.limit)

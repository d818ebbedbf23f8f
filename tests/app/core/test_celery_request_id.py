"""The request ID crosses into Celery: in the headers of a task published during a request (to a
real Redis broker), and bound on the worker's side while the task runs, then cleared."""

import base64
import io
import json
import logging

import pytest
import redis
import structlog
from celery import signals

from config.celery import app as celery_app
from core import request_context
from core.logging import JsonFormatter
from ops.tasks import add
from tests.app.conftest import REDIS_PASSWORD


@celery_app.task(name="tests.request_id_seen")
def request_id_seen() -> str | None:
    logging.getLogger("tests.task").warning("inside the task")
    return request_context.REQUEST_ID.get()


@pytest.fixture
def broker(redis_container):
    host = redis_container.get_container_host_ip()
    port = int(redis_container.get_exposed_port(6379))
    client = redis.Redis(host=host, port=port, password=REDIS_PASSWORD, db=0)
    client.delete("default")
    yield f"redis://:{REDIS_PASSWORD}@{host}:{port}/0", client
    client.delete("default")
    client.close()


def publish(url: str) -> None:
    with celery_app.connection_for_write(url) as connection:
        add.apply_async((1, 2), connection=connection, ignore_result=True)


def queued_headers(client: redis.Redis) -> dict[str, object]:
    raw = client.lpop("default")
    assert raw is not None, "no message on the default queue"
    message = json.loads(raw)
    headers: dict[str, object] = message["headers"]
    # The body is the task's (args, kwargs, embed): it really is ops.add(1, 2).
    assert json.loads(base64.b64decode(message["body"]))[0] == [1, 2]
    return headers


def test_a_task_published_during_a_request_carries_its_id(broker):
    url, client = broker
    request_context.bind("req-to-task")
    try:
        publish(url)
    finally:
        request_context.on_request_finished()
    headers = queued_headers(client)
    assert headers["task"] == "ops.add"
    assert headers["request_id"] == "req-to-task"


def test_a_task_published_outside_a_request_carries_none(broker):
    url, client = broker
    publish(url)
    assert "request_id" not in queued_headers(client)


def test_the_worker_binds_the_id_while_the_task_runs_then_clears_it():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("tests.task").addHandler(handler)
    try:
        # apply() runs the task here, with the task_prerun and task_postrun signals of a worker.
        result = request_id_seen.apply(headers={"request_id": "from-the-request"})
    finally:
        logging.getLogger("tests.task").removeHandler(handler)
    assert result.get() == "from-the-request"
    line = json.loads(stream.getvalue())
    assert line["message"] == "inside the task"
    assert line["request_id"] == "from-the-request"
    assert line["task_name"] == "tests.request_id_seen"
    assert line["task_id"] == result.id
    assert request_context.REQUEST_ID.get() is None
    assert "task_id" not in structlog.contextvars.get_contextvars()


def test_a_worker_request_carries_the_header_as_an_attribute():
    # In a worker, message headers become attributes of task.request (protocol 2).
    request_id_seen.push_request(id="t-1", request_id="from-a-message")
    try:
        signals.task_prerun.send(sender=request_id_seen, task_id="t-1", task=request_id_seen)
        assert request_context.REQUEST_ID.get() == "from-a-message"
    finally:
        signals.task_postrun.send(sender=request_id_seen, task_id="t-1", task=request_id_seen)
        request_id_seen.pop_request()
    assert request_context.REQUEST_ID.get() is None

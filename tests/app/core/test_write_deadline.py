"""core/write_deadline.py on the real database: past its request's deadline, or once the watchdog
has answered the request, nothing the request writes is kept."""

import json
import logging
import time
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from accounts.models import ApiToken, User
from core import write_deadline
from core.db import database_error_response
from core.logging import JsonFormatter
from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def deadline() -> Iterator[write_deadline.Deadline]:
    """A request's deadline a minute away, set in this test's context as runtime/asgi.py sets it
    in a request's (the test's writes run in it)."""
    value, token = write_deadline.start(60)
    yield value
    write_deadline.end(token)


def run_out(deadline: write_deadline.Deadline) -> None:
    deadline.at = time.monotonic() - 0.001


def test_a_transaction_within_its_requests_deadline_commits(deadline):
    with transaction.atomic():
        User.objects.create(username="in-time")
    assert User.objects.filter(username="in-time").exists()


def test_a_transaction_whose_commit_comes_past_the_deadline_is_rolled_back(deadline):
    hooks: list[str] = []

    def write_then_run_out() -> None:
        with transaction.atomic():
            User.objects.create(username="too-late")
            transaction.on_commit(lambda: hooks.append("ran"))
            run_out(deadline)

    with pytest.raises(write_deadline.WriteTooLate, match="COMMIT was refused"):
        write_then_run_out()
    assert not User.objects.filter(username="too-late").exists()
    assert hooks == []  # what was to follow the commit (an email's outbox row, a task) never ran
    assert not connection.in_atomic_block
    assert connection.get_autocommit()


def test_past_the_deadline_a_write_outside_a_transaction_is_refused_and_a_read_runs(deadline):
    UserFactory(username="ann")
    run_out(deadline)
    with pytest.raises(write_deadline.WriteTooLate, match="statement outside a transaction"):
        User.objects.create(username="too-late")
    with pytest.raises(write_deadline.WriteTooLate):
        User.objects.filter(username="ann").update(first_name="Ann")
    assert list(User.objects.values_list("username", "first_name")) == [("ann", "")]


def test_once_the_watchdog_answered_the_request_nothing_commits_even_in_time(deadline):
    assert write_deadline.answer(deadline)
    with (
        pytest.raises(write_deadline.WriteTooLate, match="its client was answered already"),
        transaction.atomic(),
    ):
        User.objects.create(username="after-the-504")
    assert not User.objects.filter(username="after-the-504").exists()


def test_the_watchdog_does_not_answer_while_a_commit_is_under_way(deadline):
    with write_deadline.committing():
        assert write_deadline.answer(deadline) is None  # ask again: it may yet fail
        assert not deadline.answered
    assert write_deadline.answer(deadline) is False  # it succeeded: saved


def test_the_watchdog_never_answers_a_request_that_saved_something(deadline):
    User.objects.filter(username="nobody").exists()  # a read commits nothing
    assert not deadline.saved
    UserFactory(username="ann")  # a write outside a transaction commits itself
    assert deadline.saved
    assert write_deadline.answer(deadline) is False
    assert not deadline.answered


def test_the_watchdog_answers_a_request_that_saved_nothing_and_then_nothing_commits(deadline):
    def failing_write() -> None:
        with transaction.atomic():
            User.objects.create(username="rolled-back")
            raise LookupError("the view failed before its commit")

    with pytest.raises(LookupError):
        failing_write()
    assert not deadline.saved
    assert write_deadline.answer(deadline) is True
    assert deadline.answered


def test_a_refusal_after_an_earlier_write_was_saved_says_so(deadline):
    UserFactory(username="ann")
    run_out(deadline)
    with pytest.raises(write_deadline.WriteTooLate) as refused:
        User.objects.create(username="too-late")
    assert refused.value.saved_before
    answer = json.loads(database_error_response(refused.value).content)
    assert answer["error"]["message"] == write_deadline.PARTLY_SAVED
    assert list(User.objects.values_list("username", flat=True)) == ["ann"]


def test_a_commit_begun_in_time_that_ends_past_the_deadline_is_logged(deadline, caplog):
    # What the backend does around each COMMIT (core/postgresql), the connection stalling past
    # the deadline: the COMMIT succeeded, so it was saved, and the client may have had a 504.
    with write_deadline.committing():
        run_out(deadline)
    assert deadline.saved
    assert write_deadline.answer(deadline) is False
    assert "a COMMIT begun in time ended" in caplog.text


def test_without_a_deadline_celery_and_commands_commit_whenever_they_finish():
    assert write_deadline.DEADLINE.get() is None
    with transaction.atomic():
        User.objects.create(username="a-task")
    User.objects.create(username="a-command")
    assert User.objects.filter(username__in=["a-task", "a-command"]).count() == 2


def test_a_refused_write_is_a_json_504_saying_nothing_was_saved(client):
    UserFactory(username="ann")
    deadline, token = write_deadline.start(60)  # the request's, begun after ann existed
    run_out(deadline)
    try:
        response = client.post(
            "/api/auth/token",
            {"username": "ann", "password": "correct horse battery staple"},
            content_type="application/json",
        )
    finally:
        write_deadline.end(token)
    assert response.status_code == 504
    assert response["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["code"] == "gateway_timeout"
    assert error["message"] == write_deadline.NOTHING_SAVED
    assert not ApiToken.objects.exists()


def test_the_refusal_carries_postgres_own_sqlstate_for_a_transaction_out_of_time():
    answer = database_error_response(write_deadline.WriteTooLate("late"))
    assert answer.status_code == 504
    assert write_deadline.WriteTooLate("late").sqlstate == "25P04"


def test_under_gthread_a_request_has_the_same_deadline():
    from config import wsgi
    from runtime import config as runtime_config

    assert isinstance(wsgi.application, write_deadline.WSGIDeadline)
    assert wsgi.application.seconds == runtime_config.TIMEOUT

    def late_writer(environ: dict[str, object], start_response: object) -> list[bytes]:
        deadline = write_deadline.DEADLINE.get()
        assert deadline is not None
        run_out(deadline)
        User.objects.create(username="late-thread")
        return [b"written"]

    served = write_deadline.WSGIDeadline(late_writer, seconds=60)  # type: ignore[arg-type]
    with pytest.raises(write_deadline.WriteTooLate):
        served({}, lambda *args: None)
    assert write_deadline.DEADLINE.get() is None  # the thread's next request starts afresh
    assert not User.objects.filter(username="late-thread").exists()


def test_a_line_logged_once_the_watchdog_answered_carries_the_status_its_client_got(deadline):
    """A thread still running after the watchdog's 504 may log what Django makes of its later
    status ("Internal Server Error", 500): the line says the client got 504."""

    def line() -> dict[str, object]:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "late", (), None)
        record.status_code = 500
        return dict(json.loads(JsonFormatter().format(record)))

    assert "client_status" not in line()
    assert write_deadline.answer(deadline) is True
    assert line()["client_status"] == 504
    assert line()["status_code"] == 500  # what Django says of the thread's own response

"""A task enqueued by a request, run by the worker, its result read back through the API."""

from tests.support import wait_until


def test_celery_round_trip(stack):
    staff = stack.token("celery-staff", staff=True)
    response = stack.post_json("/api/tasks", {"a": 20, "b": 22}, headers=staff)
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    result = wait_until(
        lambda: (r := stack.get(status_url, headers=staff).json())["state"] == "SUCCESS" and r,
        timeout=30,
        what="the task to succeed",
    )
    assert result["result"] == 42


def test_enqueuing_a_task_takes_staff(stack):
    body = {"a": 1, "b": 2}
    # No credentials: the session auth's CSRF check answers first (403), as on every write that
    # accepts the session; the test client skips that check, so tests/app sees the 401.
    anonymous = stack.post_json("/api/tasks", body)
    assert anonymous.status_code in (401, 403)
    assert anonymous.json()["error"]["code"] in ("unauthorized", "forbidden")
    customer = stack.post_json("/api/tasks", body, headers=stack.token("celery-customer"))
    assert customer.status_code == 403
    assert customer.json()["error"] == {"code": "forbidden", "message": "Staff only."}


def test_worker_and_beat_report_healthy_without_the_broker_in_the_check(stack):
    for service in ("worker", "beat"):
        result = stack.compose("exec", "-T", service, "python3", "/opt/celery/healthcheck.py")
        assert result.returncode == 0
    # A stale heartbeat fails the check: it really reads the file's age.
    stale = stack.compose(
        "exec",
        "-T",
        "-e",
        "CELERY_HEARTBEAT_MAX_AGE=0",
        "worker",
        "python3",
        "/opt/celery/healthcheck.py",
        check=False,
    )
    assert stale.returncode != 0
    assert "heartbeat is" in stale.stderr

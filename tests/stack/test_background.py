"""Background work on the real stack: reports on worker-reports, email through the outbox on
worker-email, and nothing lost or done twice when a worker, the broker or the mail server dies.

The stack runs with fast sweeps (conftest.FAST_BACKGROUND). Mail is read from the mail catcher's
HTTP API from inside the web container: the catcher is not published to the host. Each test
that stops or kills a service starts it again in `finally`: the session shares one stack.
"""

import csv
import io
import json
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stack.test_hardening import CSP_STRICT, EDGE_HEADERS
from tests.support import ROOT, container_health, docker, run, wait_until

CATCHER = "http://mailcatcher:8025/messages"


# --- helpers ------------------------------------------------------------------------------------


def catcher(stack, to: str | None = None) -> list[dict]:
    url = CATCHER + (f"?to={to}" if to else "")
    script = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    out = stack.compose("exec", "-T", "web", "python3", "-c", script, url).stdout
    return json.loads(out)


def customer(
    stack, name: str | None = None, *, staff: bool = False
) -> tuple[dict[str, str], str, int]:
    """A new customer (or staff member: shop-wide reports) with an email address: (auth
    headers, address, user id)."""
    name = name or f"bg-{uuid.uuid4().hex[:10]}"
    headers = stack.token(name, staff=staff)
    address = f"{name}@example.com"
    user_id = stack.psql(
        "db-primary",
        f"UPDATE accounts_user SET email = '{address}' WHERE username = '{name}' RETURNING id",
    )
    return headers, address, int(user_id)


def product(stack) -> int:
    staff = stack.token("bg-staff", staff=True)
    body = {"name": f"Kettle {uuid.uuid4().hex[:6]}", "price": "12.50", "stock": 100_000}
    response = stack.post_json("/api/products", body, headers=staff)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def place_order(stack, headers: dict[str, str], product_id: int) -> int:
    # The broker or the mail server being down fails no order. How little it costs the request
    # is a speed claim (one publish attempt: tests/app/notifications/test_outbox.py), not
    # something a timed assertion on a shared machine can show.
    response = stack.post_json(
        "/api/orders", {"items": [{"product_id": product_id, "quantity": 1}]}, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def confirmations(stack, address: str) -> list[str]:
    return sorted(m["subject"] for m in catcher(stack, address))


def expected_confirmations(order_ids: list[int]) -> list[str]:
    return sorted(f"Your order {order_id} is confirmed" for order_id in order_ids)


def wait_for_mail(stack, address: str, expected: list[str], timeout: float) -> None:
    wait_until(
        lambda: confirmations(stack, address) == expected,
        timeout=timeout,
        what=f"{len(expected)} emails to {address}",
    )
    # Two more sweeps: nothing arrives a second time.
    time.sleep(5)
    assert confirmations(stack, address) == expected


def container(stack, service: str) -> str:
    return stack.compose("ps", "--all", "-q", service).stdout.strip()


def wait_healthy(stack, service: str, timeout: float = 90) -> None:
    wait_until(
        lambda: container_health(container(stack, service)) == "healthy",
        timeout=timeout,
        what=f"{service} healthy",
    )


def restore(stack, service: str) -> None:
    stack.compose("start", service, check=False)
    wait_healthy(stack, service)


def seed_orders(stack, count: int, year: int) -> None:
    """`count` orders spread over `year`, written inside Postgres by the seed command; waits
    until the replica, which reports read, has them all."""
    stack.compose(
        "exec", "-T", "web", "python3", "manage.py", "seed",
        "--orders", str(count), "--days", "300", "--end", f"{year}-12-31T12:00:00Z",
    )  # fmt: skip
    count_sql = (
        "SELECT count(*) FROM shop_order "
        f"WHERE created_at >= '{year}-01-01' AND created_at < '{year + 1}-01-01'"
    )
    on_primary = stack.psql("db-primary", count_sql)
    wait_until(
        lambda: stack.psql("db-replica", count_sql) == on_primary,
        timeout=30,
        what="the seeded orders on the replica",
    )


def sql_totals(stack, year: int) -> tuple[int, int, str]:
    """The report's totals, computed by Postgres on the primary."""
    row = stack.psql(
        "db-primary",
        "SELECT count(DISTINCT o.id), coalesce(sum(i.quantity), 0), "
        "coalesce(sum(i.quantity * i.unit_price), 0)::numeric(28, 2) "
        "FROM shop_order o JOIN shop_orderitem i ON i.order_id = o.id "
        f"WHERE o.status = 'placed' AND o.created_at >= '{year}-01-01' "
        f"AND o.created_at < '{year + 1}-01-01'",
    )
    orders, units, revenue = row.split("|")
    return int(orders), int(units), revenue


def ask_report(stack, headers: dict[str, str], year: int) -> int:
    body = {"date_from": f"{year}-01-01", "date_to": f"{year}-12-31"}
    response = stack.post_json("/api/reports", body, headers=headers)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def report_status(stack, headers: dict[str, str], report_id: int) -> dict:
    response = stack.get(f"/api/reports/{report_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_finished(stack, headers, report_id: int, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (
            (s := report_status(stack, headers, report_id))["state"] in ("done", "failed") and s
        ),
        timeout=timeout,
        interval=0.5,
        what=f"report {report_id} to finish",
    )


def report_under_way(stack, headers, year: int, *, progress: range) -> int:
    """A report over 20,000 seeded orders of `year`, asked for and seen running with its
    progress (percent) in `progress`: mid-report, started and well short of done."""
    seed_orders(stack, 20_000, year)
    report_id = ask_report(stack, headers, year)
    wait_until(
        lambda: (
            (s := report_status(stack, headers, report_id))["state"] == "running"
            and s["progress"] in progress
        ),
        timeout=30,
        interval=0.2,
        what="the report under way",
    )
    return report_id


def report_attempts(stack, report_id: int) -> int:
    return int(
        stack.psql("db-primary", f"SELECT attempts FROM reports_report WHERE id = {report_id}")
    )


def assert_ready_mail_sent_once(stack, address: str, report_id: int) -> None:
    time.sleep(5)  # two more sweeps: nothing arrives a second time
    assert [m["subject"] for m in catcher(stack, address)] == [
        f"Your sales report {report_id} is ready"
    ]


def insert_report(stack, owner_id: int, **columns: str) -> int:
    values = {
        "owner_id": str(owner_id),
        "date_from": "'2015-01-01'",
        "date_to": "'2015-01-31'",
        "state": "'queued'",
        "progress": "0",
        "attempts": "0",
        "file": "''",
        "error": "''",
        "created_at": "now() - interval '1 minute'",
        **columns,
    }
    names = ", ".join(values)
    return int(
        stack.psql(
            "db-primary",
            f"INSERT INTO reports_report ({names}) VALUES ({', '.join(values.values())}) "
            "RETURNING id",
        )
    )


# --- email ----------------------------------------------------------------------------------------


def test_an_order_confirmation_is_mailed_once(stack):
    headers, address, _ = customer(stack)
    order_id = place_order(stack, headers, product(stack))
    wait_for_mail(stack, address, expected_confirmations([order_id]), timeout=20)
    [message] = catcher(stack, address)
    assert "Total: 12.50" in message["body"]
    assert message["message_id"].startswith(f"<order-confirmation.{order_id}.")


def test_the_email_worker_keeps_its_smtp_connection_and_replaces_one_the_server_dropped(stack):
    """Each pool process of worker-email sends one email after another over one connection
    (notifications/relay.py); a restart of the mail server drops them all, and the next emails
    go out over new ones at their first attempt, with no error recorded."""
    headers, address, _ = customer(stack)
    product_id = product(stack)
    before = [place_order(stack, headers, product_id) for _ in range(4)]
    wait_for_mail(stack, address, expected_confirmations(before), timeout=30)
    peers = {message["peer"] for message in catcher(stack, address)}
    concurrency = int(stack.compose("exec", "-T", "worker-email", "sh", "-c",
                                    "echo ${CELERY_CONCURRENCY:-2}").stdout)  # fmt: skip
    assert len(peers) <= concurrency < len(before), peers
    stack.compose("restart", "mailcatcher")
    wait_healthy(stack, "mailcatcher")
    after = [place_order(stack, headers, product_id) for _ in range(4)]
    # The catcher keeps messages in memory: only the ones sent since the restart.
    wait_for_mail(stack, address, expected_confirmations(after), timeout=30)
    outcomes = stack.psql(
        "db-primary",
        "SELECT string_agg(DISTINCT state || ' ' || attempts || ' [' || last_error || ']', ',') "
        f"FROM notifications_outboxemail WHERE recipient = '{address}'",
    )
    assert outcomes == "sent 1 []", outcomes


def test_orders_succeed_while_redis_is_down_and_every_confirmation_arrives_once(stack):
    headers, address, _ = customer(stack)
    product_id = product(stack)
    stack.compose("stop", "redis")
    try:
        # Cache, stock cache and the relay's enqueue all fail; the orders do not.
        order_ids = [place_order(stack, headers, product_id) for _ in range(5)]
        pending = stack.psql(
            "db-primary",
            "SELECT count(*) FROM notifications_outboxemail "
            f"WHERE recipient = '{address}' AND state = 'pending'",
        )
        assert pending == "5"
    finally:
        restore(stack, "redis")
    stack.wait_ready()
    # The broker is back: the outbox sweeper sends what the commits could not enqueue.
    wait_for_mail(stack, address, expected_confirmations(order_ids), timeout=60)


def test_emails_due_while_the_mail_server_is_down_arrive_once_it_returns(stack):
    headers, address, _ = customer(stack)
    product_id = product(stack)
    stack.compose("stop", "mailcatcher")
    try:
        order_ids = [place_order(stack, headers, product_id) for _ in range(3)]
        # The relay tried, failed and backs off: the rows wait with the reason.
        wait_until(
            lambda: (
                stack.psql(
                    "db-primary",
                    "SELECT count(*) FROM notifications_outboxemail "
                    f"WHERE recipient = '{address}' AND state = 'pending' AND attempts >= 1 "
                    "AND last_error <> ''",
                )
                == "3"
            ),
            timeout=20,
            what="failed attempts recorded",
        )
    finally:
        restore(stack, "mailcatcher")
    wait_for_mail(stack, address, expected_confirmations(order_ids), timeout=60)
    sent = stack.psql(
        "db-primary",
        f"SELECT count(*) FROM notifications_outboxemail WHERE recipient = '{address}' "
        "AND state = 'sent'",
    )
    assert sent == "3"


# --- reports --------------------------------------------------------------------------------------


def test_a_report_is_computed_on_the_worker_and_downloaded_through_nginx_only(stack):
    year = 2016
    headers, address, _ = customer(stack, staff=True)
    seed_orders(stack, 2_000, year)
    report_id = ask_report(stack, headers, year)
    status = wait_finished(stack, headers, report_id)
    assert status["state"] == "done", status
    orders, units, revenue = sql_totals(stack, year)
    assert (status["order_count"], status["units"], status["revenue"]) == (orders, units, revenue)

    response = stack.get(status["download_url"], headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert f'filename="report-{report_id}.csv"' in response.headers["Content-Disposition"]
    # The file Nginx serves itself carries the edge's security headers like any answer.
    for name, value in EDGE_HEADERS.items():
        assert response.raw.headers.getlist(name) == [value], name
    assert response.raw.headers.getlist("Content-Security-Policy") == [CSP_STRICT]
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == ["date", "product_id", "product_name", "orders", "units", "revenue"]
    assert lines[-1] == ["total", "", "", str(orders), str(units), revenue]
    assert all(line[0].startswith(f"{year}-") for line in lines[1:-1])

    # Only through Django's check: not for another customer, never by the file's own path.
    other, _, _ = customer(stack)
    assert stack.get(status["download_url"], headers=other).status_code == 404
    # A customer's own report over the same year counts none of the seeded customers' orders.
    mine = wait_finished(stack, other, ask_report(stack, other, year))
    assert (mine["state"], mine["scope"], mine["order_count"]) == ("done", "own", 0), mine
    path = stack.psql("db-primary", f"SELECT file FROM reports_report WHERE id = {report_id}")
    for url in (f"/protected-media/{path}", f"/media/{path}", "/media/", "/protected-media/"):
        assert stack.get(url, headers=headers).status_code == 404, url

    # The customer is told, once, with the link.
    [mail] = catcher(stack, address)
    assert mail["subject"] == f"Your sales report {report_id} is ready"
    assert f"/api/reports/{report_id}/download" in mail["body"]


def test_a_report_survives_its_worker_being_killed_and_completes_exactly_once(stack):
    year = 2014
    headers, address, _ = customer(stack, staff=True)
    report_id = report_under_way(stack, headers, year, progress=range(5, 60))
    worker = container(stack, "worker-reports")
    try:
        docker("kill", "--signal", "KILL", worker)
        assert report_status(stack, headers, report_id)["state"] == "running"
    finally:
        restore(stack, "worker-reports")

    status = wait_finished(stack, headers, report_id, timeout=90)
    assert status["state"] == "done", status
    assert (status["order_count"], status["units"], status["revenue"]) == sql_totals(stack, year)
    # It ran again after the kill; one run completed it, one file, one email.
    attempts = report_attempts(stack, report_id)
    assert attempts >= 2
    files = stack.compose(
        "exec", "-T", "worker-reports", "ls", "-a", f"/srv/media/reports/{report_id}"
    )
    assert [f for f in files.stdout.split() if f not in (".", "..")] == [
        f"report-{report_id}-{attempts}.csv"
    ]
    assert_ready_mail_sent_once(stack, address, report_id)


def test_stopping_the_report_worker_lets_the_running_report_finish(stack):
    year = 2012
    headers, _, _ = customer(stack, staff=True)
    report_id = report_under_way(stack, headers, year, progress=range(50))
    try:
        # SIGTERM: Celery's warm shutdown takes no new task and waits for the running one
        # (compose gives it 360s, the hard time limit + 30; `stop` returns once it exited).
        stack.compose("stop", "worker-reports")
        status = report_status(stack, headers, report_id)
        assert status["state"] == "done", status
        # Finished by the run that was under way, not redone.
        assert report_attempts(stack, report_id) == 1
    finally:
        restore(stack, "worker-reports")


KILL_POOL_CHILDREN = """
import os, signal
parents = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        continue
    ppid = int(status.split("PPid:")[1].split()[0])
    parents[int(pid)] = (ppid, b"bin/celery" in cmd)
main = [p for p, (pp, celery) in parents.items() if celery and not parents.get(pp, (0, False))[1]]
children = [p for p, (pp, _) in parents.items() if pp in main]
for child in children:
    os.kill(child, signal.SIGKILL)
print(len(children))
"""


def test_a_report_whose_pool_process_dies_goes_back_to_the_queue_and_completes_once(stack):
    year = 2013
    headers, address, _ = customer(stack, staff=True)
    report_id = report_under_way(stack, headers, year, progress=range(5, 60))
    # The OOM killer's way: SIGKILL to the pool processes, the worker itself lives on and
    # (acks_late + reject_on_worker_lost) puts the unacknowledged message back on the queue.
    killed = stack.compose(
        "exec", "-T", "worker-reports", "python3", "-c", KILL_POOL_CHILDREN
    ).stdout.strip()
    assert int(killed) >= 1
    status = wait_finished(stack, headers, report_id, timeout=90)
    assert status["state"] == "done", status
    assert (status["order_count"], status["units"], status["revenue"]) == sql_totals(stack, year)
    logs = stack.compose("logs", "--no-color", "--since", "5m", "worker-reports").stdout
    assert "WorkerLostError" in logs or "SIGKILL" in logs
    assert_ready_mail_sent_once(stack, address, report_id)


def test_a_report_whose_task_raises_ends_failed_with_a_reason(stack):
    headers, _, user_id = customer(stack)
    # Written around the API (reversed dates) and never enqueued: the sweeper enqueues it, the
    # task raises on the parameters, the report records why.
    report_id = insert_report(stack, user_id, date_from="'2015-02-01'", date_to="'2015-01-01'")
    status = wait_finished(stack, headers, report_id, timeout=30)
    assert status["state"] == "failed"
    assert status["error"] == "The date range ends before it starts."
    assert status["download_url"] is None
    assert stack.get(f"/api/reports/{report_id}/download", headers=headers).status_code == 409


@pytest.mark.parametrize(("attempts", "outcome"), [(1, "done"), (3, "failed")])
def test_the_sweeper_leaves_no_report_running_forever(stack, attempts, outcome):
    headers, _, user_id = customer(stack)
    # A run whose worker vanished an hour ago (its heartbeat stopped).
    report_id = insert_report(
        stack,
        user_id,
        state="'running'",
        attempts=str(attempts),
        started_at="now() - interval '1 hour'",
        heartbeat_at="now() - interval '1 hour'",
        enqueued_at="now() - interval '1 hour'",
    )
    status = wait_finished(stack, headers, report_id, timeout=30)
    assert status["state"] == outcome, status
    if outcome == "failed":
        assert "never finished" in status["error"]


# --- the media volume's size and use, exported by worker-reports ---------------------------------

MEDIA_PROBE = ROOT / "tests" / "stack" / "media-probe.compose.yml"
SCRAPE = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:9808/metrics', timeout=5).read().decode())"
)


def media_metrics(stack) -> dict[str, float]:
    """worker-reports' own exporter, scraped from inside its container as Prometheus would."""
    out = stack.compose("exec", "-T", "worker-reports", "python3", "-c", SCRAPE).stdout
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(out)
        for sample in family.samples
        if sample.name.startswith("media_volume_") and sample.labels["path"] == "/srv/media"
    }


def test_the_media_volumes_use_is_exported_and_follows_a_file_written_to_it(stack):
    """worker-reports recreated with a 16 MiB tmpfs volume at /srv/media (media-probe.compose.yml,
    never the host's disk): its metrics give that size, and 4 MiB written there move the used
    and available bytes by 4 MiB; the file deleted, they move back."""
    volume = f"{stack.project}_media-probe"
    files = f"{ROOT / 'docker-compose.yml'}:{MEDIA_PROBE}"

    def worker(env: dict[str, str]) -> None:
        run(
            "docker", "compose", "up", "--detach", "--no-deps", "--wait", "--wait-timeout", "120",
            "worker-reports", cwd=ROOT, env={**stack.env(), **env}, timeout=180,
        )  # fmt: skip

    worker({"COMPOSE_FILE": files})
    try:
        size = 16 * 1024 * 1024
        written = 4 * 1024 * 1024
        before = wait_until(
            lambda: media_metrics(stack), timeout=60, what="worker-reports' media metrics"
        )
        assert before["media_volume_size_bytes"] == size
        write = f"open('/srv/media/probe', 'wb').write(bytes({written}))"
        stack.compose("exec", "-T", "worker-reports", "python3", "-c", write)
        after = media_metrics(stack)
        assert after["media_volume_used_bytes"] - before["media_volume_used_bytes"] == written
        assert before["media_volume_avail_bytes"] - after["media_volume_avail_bytes"] == written
        stack.compose("exec", "-T", "worker-reports", "rm", "/srv/media/probe")
        assert media_metrics(stack) == before
    finally:
        # Back to the media volume docker-compose.yml gives it, then the probe volume removed.
        worker({})
        run("docker", "volume", "rm", "--force", volume)


def test_only_the_worker_with_the_media_volume_exports_it(stack):
    # The default queue's worker has MEDIA_ROOT too, as a plain directory of its image.
    out = stack.compose("exec", "-T", "worker", "python3", "-c", SCRAPE).stdout
    assert "celery_worker_rss_bytes" in out
    assert "media_volume_" not in out
    # worker-reports, with the stack's own media volume: the same numbers statvfs gives there.
    assert media_metrics(stack)["media_volume_size_bytes"] > 0

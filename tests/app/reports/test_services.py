"""A report's run and the sweeper, on the real test Postgres: totals, chunking, exactly-once
completion, failures the customer can read, and memory that does not grow with the orders."""

import csv
import json
import threading
import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from notifications.models import OutboxEmail
from reports import services
from reports.errors import ReportLimitReached
from reports.models import Report
from reports.services import report_create, report_run, report_sweep
from reports.services.aggregation import Totals
from reports.services.claim import ClaimLost, ReportHeartbeat, report_run_fail
from reports.services.run import report_complete
from reports.tasks import report_generate
from shop.models import Order, OrderItem
from tests.app.accounts.factories import UserFactory
from tests.app.reports.conftest import at, bulk_orders, order_at
from tests.app.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)
State = Report.State


def new_report(owner=None, **fields) -> Report:
    """A staff member's shop-wide report unless told otherwise."""
    fields = {
        "date_from": date(2025, 3, 1),
        "date_to": date(2025, 3, 31),
        "shop_wide": True,
        **fields,
    }
    return Report.objects.create(owner=owner or UserFactory(is_staff=True), **fields)


def rows(report: Report, media_root) -> list[list[str]]:
    report.refresh_from_db()
    with (media_root / report.file).open(newline="") as f:
        return list(csv.reader(f))


def expected_totals(date_from: date, date_to: date) -> tuple[int, int, Decimal]:
    items = OrderItem.objects.filter(
        order__status="placed",
        order__created_at__date__gte=date_from,
        order__created_at__date__lte=date_to,
    )
    totals = items.aggregate(
        orders=Count("order", distinct=True),
        units=Sum("quantity"),
        revenue=Sum(F("quantity") * F("unit_price")),
    )
    return totals["orders"], totals["units"], totals["revenue"]


@pytest.fixture
def shop():
    teapot = ProductFactory(name="Teapot", price=Decimal("2.00"))
    cup = ProductFactory(name="Cup", price=Decimal("3.50"))
    customer = UserFactory()
    order_at(customer, at(3, 9), {teapot: 2, cup: 1})
    order_at(customer, at(3, 23), {teapot: 1})
    order_at(customer, at(4, 0), {cup: 3})
    # Neither a cancelled order nor one outside the range counts.
    order_at(customer, at(4, 1), {cup: 5}, status=Order.Status.CANCELLED)
    order_at(customer, at(1, 0) - timedelta(microseconds=1), {teapot: 7})
    order_at(customer, at(6, 0), {teapot: 7})
    return teapot, cup


def test_a_report_adds_up_orders_per_day_and_product(shop, broker_down, media_root, settings):
    settings.REPORT_CHUNK_SIZE = 2
    teapot, cup = shop
    owner = UserFactory(email="ada@example.com")
    report = new_report(owner, date_from=date(2025, 3, 1), date_to=date(2025, 3, 5))
    assert report_run(report_id=report.pk).status == "done"

    assert rows(report, media_root) == [
        ["date", "product_id", "product_name", "orders", "units", "revenue"],
        ["2025-03-03", str(teapot.pk), "Teapot", "2", "3", "6.00"],
        ["2025-03-03", str(cup.pk), "Cup", "1", "1", "3.50"],
        ["2025-03-04", str(cup.pk), "Cup", "1", "3", "10.50"],
        ["total", "", "", "3", "7", "20.00"],
    ]
    report.refresh_from_db()
    assert (report.state, report.progress, report.attempts) == (State.DONE, 100, 1)
    assert (report.order_count, report.units, report.revenue) == (3, 7, Decimal("20.00"))
    assert report.file == f"reports/{report.pk}/report-{report.pk}-1.csv"
    assert report.finished_at is not None
    # Readable by Nginx's user through the shared volume; no temporary file left.
    assert (media_root / report.file).stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (media_root / report.file).parent.iterdir()] == [
        f"report-{report.pk}-1.csv"
    ]

    email = OutboxEmail.objects.get(key=f"report-ready:{report.pk}")
    assert email.recipient == "ada@example.com"
    assert f"http://localhost:8080/api/reports/{report.pk}/download" in email.body


def test_a_product_filter_keeps_only_that_products_lines(shop, broker_down, media_root):
    teapot, _ = shop
    report = new_report(date_from=date(2025, 3, 1), date_to=date(2025, 3, 5), product=teapot)
    report_run(report_id=report.pk)
    assert rows(report, media_root)[1:] == [
        ["2025-03-03", str(teapot.pk), "Teapot", "2", "3", "6.00"],
        ["total", "", "", "2", "3", "6.00"],
    ]


def test_chunks_with_equal_timestamps_count_every_order_once(broker_down, settings):
    products = [ProductFactory(price=Decimal(f"{n}.25")) for n in range(1, 4)]
    bulk_orders(UserFactory().pk, [p.pk for p in products], count=1000, days=3)
    for chunk_size in (1, 7, 1000, 5000):
        settings.REPORT_CHUNK_SIZE = chunk_size
        report = new_report(date_from=date(2025, 3, 1), date_to=date(2025, 3, 2))
        assert report_run(report_id=report.pk).status == "done"
        report.refresh_from_db()
        expected = expected_totals(date(2025, 3, 1), date(2025, 3, 2))
        assert (report.order_count, report.units, report.revenue) == expected, chunk_size


def test_running_again_completes_nothing_twice(shop, broker_down, media_root):
    report = new_report(UserFactory(email="a@example.com"))
    assert report_run(report_id=report.pk).status == "done"
    report.refresh_from_db()
    finished_at = report.finished_at
    # A redelivered message, a duplicate the sweeper enqueued: no-ops.
    assert report_run(report_id=report.pk).status == "skipped"
    assert report_generate.apply(kwargs={"report_id": report.pk}).get() == "skipped"
    report.refresh_from_db()
    assert (report.finished_at, report.attempts) == (finished_at, 1)
    assert len(list((media_root / "reports" / str(report.pk)).iterdir())) == 1
    assert OutboxEmail.objects.filter(key=f"report-ready:{report.pk}").count() == 1


def test_a_live_run_is_never_overtaken(broker_down, settings):
    report = new_report()
    Report.objects.filter(pk=report.pk).update(
        state=State.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )
    result = report_run(report_id=report.pk)
    assert (result.status, result.retry_in) == ("busy", settings.REPORT_STALE_SECONDS)
    report.refresh_from_db()
    assert (report.state, report.attempts) == (State.RUNNING, 1)


def test_a_run_whose_worker_died_is_taken_over_and_the_dead_run_can_change_nothing(
    shop, broker_down, media_root
):
    report = new_report(UserFactory(email="a@example.com"))
    silent = timezone.now() - timedelta(minutes=5)
    Report.objects.filter(pk=report.pk).update(
        state=State.RUNNING, attempts=1, heartbeat_at=silent, progress=40
    )
    # A file the dead run left half written.
    (media_root / "reports" / str(report.pk)).mkdir(parents=True)
    (media_root / "reports" / str(report.pk) / f".report-{report.pk}-1.csv.tmp").write_text("x")

    assert report_run(report_id=report.pk).status == "done"
    report.refresh_from_db()
    assert (report.state, report.attempts) == (State.DONE, 2)
    assert [p.name for p in (media_root / report.file).parent.iterdir()] == [
        f"report-{report.pk}-2.csv"
    ]
    # Should run 1 wake up now, every write of it is refused.
    totals = Totals(orders=1, units=1, revenue=Decimal("1"))
    assert (
        report_complete(report_id=report.pk, attempt=1, totals=totals, path="reports/x.csv")
        is False
    )
    assert report_run_fail(report_id=report.pk, attempt=1, reason="late") is False
    with pytest.raises(ClaimLost):
        ReportHeartbeat(report_id=report.pk, attempt=1, total=10)(processed=5)
    report.refresh_from_db()
    assert (report.state, report.order_count, report.error) == (State.DONE, 4, "")
    assert OutboxEmail.objects.filter(key=f"report-ready:{report.pk}").count() == 1


def test_invalid_parameters_found_by_the_task_fail_it_with_a_reason(broker_down):
    # Written around the API (an older release, a fix by hand): the task checks again.
    report = new_report(date_from=date(2025, 3, 2), date_to=date(2025, 3, 1))
    assert report_run(report_id=report.pk).status == "failed"
    report.refresh_from_db()
    assert report.state == State.FAILED
    assert report.error == "The date range ends before it starts."
    assert report.finished_at is not None


def test_a_task_that_raises_ends_failed_with_a_reason_the_customer_can_read(
    broker_down, settings, tmp_path
):
    # The media volume is not a directory: writing the CSV raises.
    settings.MEDIA_ROOT = tmp_path / "not-a-directory"
    settings.MEDIA_ROOT.write_text("")
    report = new_report()
    assert report_generate.apply(kwargs={"report_id": report.pk}).get() == "failed"
    report.refresh_from_db()
    assert report.state == State.FAILED
    assert "internal error (NotADirectoryError)" in report.error
    assert f"report {report.pk}" in report.error
    assert "Traceback" not in report.error


def test_revenue_beyond_sixteen_digits_is_stored_exactly(broker_down, media_root):
    # Two orders whose totals fit Order.total (18 digits) while their sum did not fit the
    # report's revenue (once 16 digits): the run failed at completion, three times over.
    vase = ProductFactory(name="Vase", price=Decimal("99999999.99"))
    buyer = UserFactory()
    for hour in (9, 10):
        order = order_at(buyer, at(3, hour), {vase: 5_000_000})
        Order.objects.filter(pk=order.pk).update(total=Decimal("499999999950000000.00") / 1000)
    report = new_report(date_from=date(2025, 3, 3), date_to=date(2025, 3, 3))
    assert report_generate.apply(kwargs={"report_id": report.pk}).get() == "done"
    report.refresh_from_db()
    assert (report.state, report.attempts) == (State.DONE, 1)
    assert report.revenue == Decimal("999999999900000.00")
    assert rows(report, media_root)[-1] == ["total", "", "", "2", "10000000", "999999999900000.00"]


@pytest.fixture
def outbox_refuses_rows():
    """Postgres refuses every new outbox row (a real constraint): the report's completion, which
    writes its email in the same transaction, fails."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE notifications_outboxemail "
            "ADD CONSTRAINT test_refuse_all CHECK (false) NOT VALID"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE notifications_outboxemail DROP CONSTRAINT test_refuse_all")


def test_a_failure_while_completing_ends_the_report_failed_with_its_reason(
    shop, broker_down, media_root, outbox_refuses_rows
):
    report = new_report(date_from=date(2025, 3, 1), date_to=date(2025, 3, 5))
    assert report_generate.apply(kwargs={"report_id": report.pk}).get() == "failed"
    report.refresh_from_db()
    # At once, with what went wrong: not left running for the sweeper to retry and give up on.
    assert (report.state, report.attempts) == (State.FAILED, 1)
    assert "internal error (IntegrityError)" in report.error
    assert f"report {report.pk}" in report.error
    assert "stopped" not in report.error
    assert report.file == ""
    assert not OutboxEmail.objects.exists()
    # The CSV that was never recorded is not left behind.
    assert list((media_root / "reports" / str(report.pk)).iterdir()) == []


def test_a_report_out_of_attempts_fails_instead_of_running(broker_down, settings):
    report = new_report()
    Report.objects.filter(pk=report.pk).update(
        state=State.RUNNING,
        attempts=settings.REPORT_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    assert report_run(report_id=report.pk).status == "failed"
    report.refresh_from_db()
    assert report.state == State.FAILED
    assert f"started {settings.REPORT_MAX_ATTEMPTS} times" in report.error


def test_the_sweeper_leaves_nothing_queued_or_running_forever(celery_broker, settings):
    now = timezone.now()
    long_ago = now - timedelta(hours=1)

    def report(**fields) -> Report:
        created = new_report()
        Report.objects.filter(pk=created.pk).update(**fields)
        return created

    never_enqueued = report(created_at=long_ago)
    just_created = report()  # its on-commit enqueue may still be on its way
    enqueued = report(enqueued_at=now)
    # Enqueued, started, then silent: its worker died.
    dead = report(
        state=State.RUNNING,
        attempts=1,
        enqueued_at=long_ago - timedelta(minutes=1),
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    dead_for_good = report(
        state=State.RUNNING,
        attempts=settings.REPORT_MAX_ATTEMPTS,
        enqueued_at=long_ago,
        heartbeat_at=long_ago,
    )
    alive = report(state=State.RUNNING, attempts=1, enqueued_at=now, heartbeat_at=now)
    past_hard_limit = report(
        state=State.RUNNING,
        attempts=1,
        started_at=now - timedelta(seconds=settings.REPORT_TIME_LIMIT + 120),
        heartbeat_at=now,
    )

    assert report_sweep() == {"enqueued": 1, "requeued": 1, "failed": 2}
    queued = [
        json.loads(raw)["headers"]["kwargsrepr"] for raw in celery_broker.lrange("reports", 0, -1)
    ]
    assert sorted(queued) == sorted(
        [f"{{'report_id': {never_enqueued.pk}}}", f"{{'report_id': {dead.pk}}}"]
    )
    states = dict(Report.objects.values_list("pk", "state"))
    assert states[never_enqueued.pk] == states[just_created.pk] == State.QUEUED
    assert states[enqueued.pk] == State.QUEUED
    assert states[dead.pk] == states[alive.pk] == State.RUNNING
    assert states[dead_for_good.pk] == states[past_hard_limit.pk] == State.FAILED
    assert "never finished" in Report.objects.get(pk=dead_for_good.pk).error
    assert "limit" in Report.objects.get(pk=past_hard_limit.pk).error

    # Once per silent run: the next sweep does not enqueue the same ones again.
    assert report_sweep() == {"enqueued": 0, "requeued": 0, "failed": 0}
    assert celery_broker.llen("reports") == 2


def peak_memory_of_a_report(count: int, settings) -> int:
    customer = UserFactory()
    products = [ProductFactory(price=Decimal(f"{n}.10")) for n in range(1, 6)]
    bulk_orders(customer.pk, [p.pk for p in products], count=count, days=10)
    report = new_report(date_from=date(2025, 3, 1), date_to=date(2025, 3, 31))
    tracemalloc.start()
    try:
        assert report_run(report_id=report.pk).status == "done"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    report.refresh_from_db()
    assert report.order_count == count
    Order.objects.all().delete()
    return peak


def test_memory_stays_flat_as_the_orders_grow(broker_down, settings):
    settings.REPORT_CHUNK_SIZE = 500
    peak_memory_of_a_report(100, settings)  # one-time costs: imports, connections, caches
    small = peak_memory_of_a_report(2_000, settings)
    large = peak_memory_of_a_report(20_000, settings)
    # Ten times the orders, the same chunk and day in memory: the peak barely moves.
    assert large < small * 1.3, (small, large)


# --- at most REPORT_MAX_ACTIVE_PER_OWNER reports queued or running per owner -------------------


def ask(owner) -> Report:
    return report_create(owner=owner, date_from=date(2025, 3, 1), date_to=date(2025, 3, 2))


def test_an_owner_at_the_cap_gets_a_clear_error_and_nothing_is_created(broker_down, settings):
    settings.REPORT_MAX_ACTIVE_PER_OWNER = 2
    owner, other = UserFactory(), UserFactory()
    first, second = ask(owner), ask(owner)
    with pytest.raises(ReportLimitReached) as caught:
        ask(owner)
    assert caught.value.status == 409
    assert "2 reports" in caught.value.message
    assert Report.objects.filter(owner=owner).count() == 2
    # Another owner has a cap of their own.
    ask(other)
    # Finished reports, done or failed, no longer count.
    Report.objects.filter(pk=first.pk).update(state=State.DONE)
    Report.objects.filter(pk=second.pk).update(state=State.FAILED)
    ask(owner)
    ask(owner)
    # A running one does count.
    Report.objects.filter(owner=owner, state=State.QUEUED).update(state=State.RUNNING)
    with pytest.raises(ReportLimitReached):
        ask(owner)


def test_concurrent_requests_at_the_cap_let_only_one_through(broker_down, settings):
    settings.REPORT_MAX_ACTIVE_PER_OWNER = 3
    owner = UserFactory()
    ask(owner)
    ask(owner)
    # Both requests count the owner's reports only once the other's insert is visible or
    # impossible: without a lock each would see 2 of 3 and both would create a report.
    threads = 4
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def request() -> None:
        try:
            barrier.wait()
            with transaction.atomic(using="default"):
                # Hold the transaction open a little past the count, where the race lies.
                ask(owner)
                time.sleep(0.2)
            outcomes.append("created")
        except ReportLimitReached:
            outcomes.append("refused")
        finally:
            connections.close_all()

    workers = [threading.Thread(target=request) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * (threads - 1)
    assert Report.objects.filter(owner=owner).count() == 3


# --- retention: CSVs deleted REPORT_RETENTION_DAYS after the report finished ---------------------


def finished_report(media_root, *, days_ago: float, state=State.DONE) -> Report:
    """A report that finished `days_ago` days ago, with its CSV really on the media volume."""
    report = new_report()
    path = f"reports/{report.pk}/report-{report.pk}-1.csv"
    (media_root / "reports" / str(report.pk)).mkdir(parents=True)
    (media_root / path).write_text("date,product_id\n")
    Report.objects.filter(pk=report.pk).update(
        state=state,
        file=path if state == State.DONE else "",
        finished_at=timezone.now() - timedelta(days=days_ago),
    )
    report.refresh_from_db()
    return report


def test_the_retention_sweep_deletes_only_files_past_their_age(media_root, settings):
    settings.REPORT_RETENTION_DAYS = 7
    old = finished_report(media_root, days_ago=7.1)
    # A dead run's leftover in the old report's directory goes with it.
    (media_root / "reports" / str(old.pk) / f".report-{old.pk}-0.csv.tmp").write_text("x")
    young = finished_report(media_root, days_ago=6.9)
    failed = finished_report(media_root, days_ago=30, state=State.FAILED)
    old_path = old.file

    assert services.report_files_expire() == {"expired": 1}
    assert not (media_root / "reports" / str(old.pk)).exists()
    assert (media_root / young.file).is_file()
    assert (media_root / "reports" / str(failed.pk)).is_dir()  # not ours to judge: no file
    old.refresh_from_db()
    # The row stays, marked, and points at no file.
    assert (old.state, old.file, old.order_count) == (State.DONE, "", None)
    assert old.expired_at is not None
    # Again: nothing left to do, and a file already gone is no error.
    assert services.report_files_expire() == {"expired": 0}
    assert not (media_root / old_path).exists()


def test_the_retention_sweep_task_runs_and_zero_days_keeps_every_file(media_root, settings):
    from reports.tasks import report_files_expire

    old = finished_report(media_root, days_ago=400)
    settings.REPORT_RETENTION_DAYS = 0
    assert report_files_expire.apply().get() == {"expired": 0}
    assert (media_root / old.file).is_file()
    settings.REPORT_RETENTION_DAYS = 30
    assert report_files_expire.apply().get() == {"expired": 1}
    assert not (media_root / "reports" / str(old.pk)).exists()


def test_a_claim_the_database_refuses_leaves_the_report_queued_and_the_task_retries(
    broker_down, settings
):
    """A lock held past lock_timeout (or the database gone) at the claim: before, the task
    failed and the report stayed queued until the sweeper's visibility-timeout pass (an hour),
    counting against its owner's cap all the while."""
    report = new_report()
    holder = psycopg.connect(**connection.get_connection_params(), autocommit=False)
    try:
        holder.execute("SELECT 1 FROM reports_report WHERE id = %s FOR UPDATE", [report.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")
        try:
            result = report_run(report_id=report.pk)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        holder.close()
    assert (result.status, result.retry_in) == ("retry", settings.REPORT_STALE_SECONDS)
    report.refresh_from_db()
    assert (report.state, report.attempts) == (State.QUEUED, 0)
    assert report_run(report_id=report.pk).status == "done"  # the retry, the lock gone

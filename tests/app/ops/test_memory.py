"""GET /api/ops/memory-growth and ops.memory: a worker's memory growth over a window, by line."""

import asyncio
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from ops import memory
from tests.app.accounts.factories import UserFactory, bearer

MIB = 1024 * 1024
URL = "/api/ops/memory-growth"

_kept: list[bytearray] = []
MARK = "# allocated in the window"
ALLOCATING_LINE = next(
    number
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1)
    if text.rstrip().endswith(MARK) and "_kept.append" in text
)


def allocate_soon(*, delay: float, mb: int) -> threading.Thread:
    """Another thread allocates `mb` MiB, kept, after `delay` s: inside the measured window."""

    def run() -> None:
        time.sleep(delay)
        _kept.append(bytearray(mb * MIB))  # allocated in the window

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def _no_tracing_left():
    assert not tracemalloc.is_tracing()
    yield
    _kept.clear()
    if tracemalloc.is_tracing():
        tracemalloc.stop()
        pytest.fail("tracemalloc was left tracing")


def measure(seconds: float = 1, limit: int = 10) -> memory.MemoryGrowth:
    return asyncio.run(memory.memory_growth_measure(seconds=seconds, limit=limit))


def test_the_top_growth_is_the_line_that_allocated_in_the_window_and_tracing_stops():
    thread = allocate_soon(delay=0.3, mb=4)
    growth = measure(seconds=1.5, limit=5)
    thread.join()
    top = growth.top[0]
    assert (top.file, top.line) == (__file__, ALLOCATING_LINE), growth.top
    assert top.code.startswith("_kept.append(bytearray(mb * MIB))")
    assert top.size_diff >= 4 * MIB
    assert top.count_diff >= 1
    assert growth.total_size_diff >= 4 * MIB
    assert growth.pid == os.getpid()
    assert growth.seconds >= 1.5
    assert len(growth.top) <= 5
    assert not tracemalloc.is_tracing()


def test_an_allocation_before_the_window_is_not_growth():
    _kept.append(bytearray(4 * MIB))  # allocated before the window
    growth = measure(seconds=1)
    assert all(entry.size_diff < MIB for entry in growth.top), growth.top


def test_tracing_already_on_is_left_on():
    tracemalloc.start()
    try:
        thread = allocate_soon(delay=0.3, mb=2)
        growth = measure(seconds=1)
        thread.join()
        assert tracemalloc.is_tracing()
        assert (growth.top[0].file, growth.top[0].line) == (__file__, ALLOCATING_LINE)
    finally:
        tracemalloc.stop()


def test_the_measurement_s_own_and_import_allocations_are_left_out():
    growth = measure(seconds=1, limit=50)
    files = {entry.file for entry in growth.top}
    assert memory.__file__ not in files
    assert tracemalloc.__file__ not in files
    assert not {f for f in files if f.startswith("<frozen importlib")}


def test_a_second_concurrent_measurement_is_refused_and_the_first_completes():
    async def both():
        first = asyncio.ensure_future(memory.memory_growth_measure(seconds=1, limit=1))
        await asyncio.sleep(0.1)
        with pytest.raises(memory.MeasurementInProgress):
            await memory.memory_growth_measure(seconds=1, limit=1)
        return await first

    assert asyncio.run(both()).pid == os.getpid()
    assert not memory._MEASURING.locked()


def test_a_cancelled_measurement_stops_tracing_and_frees_the_slot():
    async def cancelled():
        task = asyncio.ensure_future(memory.memory_growth_measure(seconds=5, limit=1))
        await asyncio.sleep(0.2)
        assert tracemalloc.is_tracing()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert not tracemalloc.is_tracing()
    assert not memory._MEASURING.locked()


@pytest.mark.parametrize(("seconds", "limit"), [(0.5, 1), (26, 1), (1, 0), (1, 51)])
def test_the_function_refuses_a_window_or_limit_out_of_bounds(seconds, limit):
    with pytest.raises(ValueError, match="must be within"):
        measure(seconds=seconds, limit=limit)


# --- the endpoint ----------------------------------------------------------------------------


@pytest.fixture
def staff():
    return bearer(UserFactory(is_staff=True))


@pytest.mark.django_db
def test_staff_get_the_top_growth_of_the_worker_that_served_them(client, staff):
    thread = allocate_soon(delay=0.3, mb=3)
    response = client.get(URL, {"seconds": 1, "limit": 3}, **staff)
    thread.join()
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["pid"] == os.getpid()
    assert body["host"] == socket.gethostname()
    assert body["seconds"] >= 1
    assert len(body["top"]) <= 3
    top = body["top"][0]
    assert (top["file"], top["line"]) == (__file__, ALLOCATING_LINE)
    assert top["size_diff"] >= 3 * MIB
    assert top.keys() == {"file", "line", "code", "size_diff", "count_diff", "size"}
    assert not tracemalloc.is_tracing()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"seconds": 0}, "seconds"),
        ({"seconds": 26}, "seconds"),
        ({"seconds": "ten"}, "seconds"),
        ({"limit": 0}, "limit"),
        ({"limit": 51}, "limit"),
        ({"limit": 2.5}, "limit"),
    ],
)
def test_out_of_bounds_parameters_are_a_400_naming_the_field(client, staff, query, field):
    response = client.get(URL, query, **staff)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"].keys() == {field}
    assert not tracemalloc.is_tracing()


@pytest.mark.django_db
def test_anonymous_is_a_401_and_measures_nothing(client):
    response = client.get(URL, {"seconds": 1})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.django_db
def test_a_customer_is_a_403_and_measures_nothing(client):
    response = client.get(URL, {"seconds": 1}, **bearer(UserFactory()))
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "forbidden", "message": "Staff only."}


@pytest.mark.django_db
def test_a_measurement_while_one_runs_in_the_same_worker_is_a_409(client, staff):
    first = threading.Thread(target=measure, kwargs={"seconds": 2, "limit": 1})
    first.start()
    try:
        deadline = time.monotonic() + 5
        while not memory._MEASURING.locked():
            assert time.monotonic() < deadline, "the first measurement never started"
            time.sleep(0.01)
        response = client.get(URL, {"seconds": 1}, **staff)
    finally:
        first.join()
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "measurement_in_progress"
    assert "already running" in error["message"]

"""core.postgresql's health check (CONN_HEALTH_CHECKS) on the test Postgres: a connection that is
fine is checked without a query, and one the server ended is not reused."""

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connections, transaction

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def observer() -> Iterator[psycopg.Connection]:
    """A second session of the same role, to see and end the first."""
    params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        yield other


def backend_pid() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_connection_that_is_fine_is_checked_without_a_query():
    pid = backend_pid()
    with observer() as other:
        assert connections["default"].is_usable()
        last = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        assert last.fetchone() == ("SELECT pg_backend_pid()",)


def test_a_connection_the_server_ended_is_replaced_before_the_next_query():
    connection = connections["default"]
    pid = backend_pid()
    with observer() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connection.is_usable()
    # What Django does before a request's first query: the check fails, the next query gets
    # a new connection instead of an error.
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    assert backend_pid() != pid


def test_a_connection_whose_socket_was_shut_is_not_reused():
    """As the watchdog cuts a stalled query (core/db.py): the socket shut, nothing read yet."""
    connection = connections["default"]
    backend_pid()
    sock = socket.socket(fileno=os.dup(connection.connection.pgconn.socket))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()
    try:
        assert not connection.is_usable()
    finally:
        connection.close()  # the next test's (and the teardown's) query gets a new one


def test_a_connection_inside_a_transaction_is_checked_with_a_query():
    pid = backend_pid()
    with transaction.atomic(), observer() as other:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 2")
        assert connections["default"].is_usable()
        last = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        assert last.fetchone() == ("SELECT 1",)

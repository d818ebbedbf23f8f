"""The DATABASES OPTIONS reach libpq and the socket it opens, on a real connection to the test
Postgres (the settings module alone would only prove a dict was written)."""

import os
import socket

import pytest
from django.conf import settings
from django.db import connection

pytestmark = pytest.mark.django_db

OPTIONS = settings.DATABASES["default"]["OPTIONS"]


def test_libpq_was_given_the_connect_timeout_and_keepalive_options():
    connection.ensure_connection()
    params = connection.connection.info.get_parameters()
    for name in ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                 "keepalives_count"):  # fmt: skip
        assert params[name] == str(OPTIONS[name]), name


def test_the_socket_has_tcp_keepalives_as_configured():
    connection.ensure_connection()
    # A duplicate of libpq's own socket: the same kernel socket, closed here without harm.
    sock = socket.socket(fileno=os.dup(connection.connection.pgconn.socket))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == OPTIONS["keepalives_idle"]
        )
        assert (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
            == OPTIONS["keepalives_interval"]
        )
        assert (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == OPTIONS["keepalives_count"]
        )
    finally:
        sock.close()


def test_the_server_sees_the_application_name():
    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        assert cursor.fetchone() == (OPTIONS["application_name"],)

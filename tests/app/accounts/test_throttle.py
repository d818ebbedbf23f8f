"""The login limits of accounts.throttle, on real Redis and Postgres: a backoff per account
that no change of address escapes, and one password hash at a time per process within a share
of its time."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import connection

from accounts.throttle import hash_gate
from tests.app.accounts.factories import UserFactory
from tests.app.accounts.hashers import GatedTestHasher

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


def authenticate_in_thread(**credentials: str) -> None:
    try:
        authenticate(**credentials)
    finally:
        connection.close()  # this thread's own connection


@pytest.fixture(autouse=True)
def _limits(settings, redis_settings) -> Iterator[None]:
    settings.PASSWORD_HASHERS = ["tests.app.accounts.hashers.GatedTestHasher"]
    settings.LOGIN_FREE_FAILURES = 3
    settings.LOGIN_BACKOFF_SECONDS = 60
    settings.LOGIN_HASH_SHARE = 1.0
    cache.clear()
    GatedTestHasher.reset()
    yield
    GatedTestHasher.reset()


@contextmanager
def hash_held(*, username: str) -> Iterator[None]:
    """Another login of this process is hashing (held inside the test hasher) meanwhile."""
    GatedTestHasher.hold = threading.Event()
    # Creating the user hashed its password and set `entered`: wait for this login's hash only.
    GatedTestHasher.entered.clear()
    first = threading.Thread(
        target=authenticate_in_thread, kwargs={"username": username, "password": "x"}
    )
    first.start()
    try:
        assert GatedTestHasher.entered.wait(timeout=10)
        yield
    finally:
        GatedTestHasher.hold.set()
        first.join(timeout=30)


def login(client, username: str, password: str, address: str = "192.0.2.1"):
    return client.post(
        "/api/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def test_failures_past_the_free_ones_lock_the_account_from_every_address(client):
    UserFactory(username="ann")
    UserFactory(username="bob")
    for i in range(4):  # 3 free failures, the 4th sets the lock
        assert login(client, "ann", "guess", address=f"192.0.2.{i}").status_code == 401

    locked = login(client, "ANN", PASSWORD, address="198.51.100.9")  # right password, new address
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "login_throttled"
    assert 0 < int(locked["Retry-After"]) <= 60
    assert login(client, "bob", PASSWORD).status_code == 201  # another account: untouched


def test_a_locked_login_hashes_nothing(client):
    UserFactory(username="ann")
    for _ in range(4):
        login(client, "ann", "guess")
    GatedTestHasher.reset()
    assert login(client, "ann", "guess").status_code == 429
    assert GatedTestHasher.most_at_once == 0


def test_the_lock_doubles_and_a_success_clears_the_count(client, settings, state_client):
    UserFactory(username="ann")
    settings.LOGIN_BACKOFF_SECONDS = 2
    ttls = []
    for _ in range(3):
        login(client, "ann", "guess")

    def unlock() -> None:  # as if the lock ran out
        for key in state_client.keys("*login:locked:*"):
            state_client.delete(key)

    for _ in range(3):
        unlock()
        login(client, "ann", "guess")
        (key,) = state_client.keys("*login:locked:*")
        ttls.append(state_client.ttl(key))
    assert ttls == [2, 4, 8]

    unlock()
    assert login(client, "ann", PASSWORD).status_code == 201
    assert state_client.keys("*login:*") == []


def test_one_hash_at_a_time_per_process_and_a_login_that_cannot_wait_is_a_503(client, settings):
    UserFactory(username="ann")
    settings.LOGIN_HASH_WAIT_SECONDS = 0.2
    with hash_held(username="ann"):
        busy = login(client, "nobody", "guess")
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "login_busy"
    assert busy["Retry-After"] == "1"

    settings.LOGIN_HASH_WAIT_SECONDS = 30
    GatedTestHasher.reset()
    threads = [
        threading.Thread(
            target=authenticate_in_thread, kwargs={"username": "ann", "password": PASSWORD}
        )
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert GatedTestHasher.most_at_once == 1


def test_after_a_hash_the_next_waits_for_the_share(settings):
    """share 0.5: a hash that took t seconds keeps the gate shut for another t."""
    UserFactory(username="ann")
    settings.LOGIN_HASH_SHARE = 0.5
    settings.LOGIN_HASH_WAIT_SECONDS = 0.0
    GatedTestHasher.hold = threading.Event()
    threading.Timer(0.5, GatedTestHasher.hold.set).start()
    assert authenticate(username="ann", password=PASSWORD) is not None  # held ~0.5 s
    ran, _ = hash_gate.run(lambda: None, share=0.5, max_wait=0.0)
    assert not ran


def admin_login(client, username: str, password: str):
    return client.post("/admin/login/", {"username": username, "password": password})


def test_the_admin_form_says_the_account_is_locked_not_that_the_password_is_wrong(
    client, plain_static
):
    UserFactory(username="ann", is_staff=True)
    wrong = admin_login(client, "ann", "guess")
    assert "enter the correct username and password" in wrong.content.decode()
    for _ in range(3):
        admin_login(client, "ann", "guess")
    locked = admin_login(client, "ann", PASSWORD).content.decode()
    assert "Too many failed logins for this account; try again in" in locked
    assert "enter the correct username and password" not in locked


def test_the_admin_form_says_the_server_is_busy_not_that_the_password_is_wrong(
    client, settings, plain_static
):
    UserFactory(username="ann", is_staff=True)
    settings.LOGIN_HASH_WAIT_SECONDS = 0.2
    with hash_held(username="ann"):
        busy = admin_login(client, "ann", PASSWORD).content.decode()
    assert "The server is busy checking other logins" in busy
    assert "enter the correct username and password" not in busy


def test_with_its_redis_down_the_lock_fails_open_and_says_so(
    client, redis_settings, closed_port, caplog
):
    # README "Rate limits": logins keep working while the lock's Redis is down, and the log says
    # the account was not throttled; only Nginx's per-address limit is left.
    from accounts.throttle import UNAVAILABLE

    UserFactory(username="ann")
    working = redis_settings.CACHES
    redis_settings.CACHES = {
        **working,
        "state": {**working["state"], "LOCATION": f"redis://127.0.0.1:{closed_port}/3"},
    }
    try:
        assert [login(client, "ann", "guess").status_code for _ in range(6)] == [401] * 6
        assert login(client, "ann", PASSWORD).status_code == 201
    finally:
        redis_settings.CACHES = working
    assert UNAVAILABLE in caplog.text

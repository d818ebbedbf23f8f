"""Nginx's rate limits per client address, at the production defaults of .env.example (the rest
of the suite runs with them lifted: conftest.LIFTED_LIMITS). Over a limit: a JSON 429 with
Retry-After, before Django spends anything on the request. The client address is the
connection's unless NGINX_REAL_IP_FROM names the proxy it came through."""

import uuid
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.stack.conftest import Stack
from tests.support import ROOT, run

pytestmark = pytest.mark.stack

# .env.example's values, said again so that a change there is a decision here too.
DEFAULT_RATES = {
    "NGINX_RATE_LOGIN": "10r/m",
    "NGINX_RATE_REPORTS": "6r/m",
    "NGINX_RATE_WRITES": "10r/s",
}


@pytest.fixture(scope="module")
def suite_nginx(stack: Stack) -> Iterator[None]:
    """The suite's Nginx (limits lifted) back once, after the module: each test recreates it."""
    try:
        yield
    finally:
        stack.compose("up", "-d", "--wait", "--force-recreate", "--no-deps", "nginx")


@pytest.fixture
def limited(stack: Stack, suite_nginx: None) -> Callable[..., None]:
    def apply(**extra: str) -> None:
        """Recreates Nginx alone (fresh rate-limit zones) with the defaults and these."""
        env = {**stack.env(), **DEFAULT_RATES, "NGINX_REAL_IP_FROM": "", **extra}
        run("docker", "compose", "up", "-d", "--wait", "--force-recreate", "--no-deps", "nginx",
            cwd=ROOT, env=env, timeout=120)  # fmt: skip

    apply()
    return apply


# Writes: 10r/s with a burst of 20. A slot comes back every 100 ms, so a sequential burst meets
# the limit only if it outruns the refill: 60 posts do unless each takes over 65 ms.
WRITES_BURST = 60


def burst(
    url: str, count: int, *, body: object, forwarded_for: Callable[[int], str] | None = None
) -> list[requests.Response]:
    responses = []
    with requests.Session() as session:
        for i in range(count):
            headers = {"X-Forwarded-For": forwarded_for(i)} if forwarded_for else {}
            responses.append(session.post(url, json=body, headers=headers, timeout=30))
    return responses


def assert_limited(responses: list[requests.Response], *, allowed: int, retry_after: str) -> None:
    statuses = [r.status_code for r in responses]
    assert 429 not in statuses[:allowed], statuses
    limited = [r for r in responses if r.status_code == 429]
    assert limited, statuses
    for response in limited:
        assert response.headers["Retry-After"] == retry_after
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "rate_limited"
        # Nginx's own answer carries the request's ID like Django's do.
        assert len(response.headers["X-Request-ID"]) == 32


def test_logins_beyond_the_burst_get_a_json_429_and_reads_go_on(stack, limited):
    # 10r/m with a burst of 5: six logins pass at once, the next ones wait 6 s each. The burst's
    # posts lack a password (Django's 400, nothing hashed) so that it takes milliseconds: real
    # logins are paced by the app's hash share, and a burst slower than 6 s would see the
    # bucket refill mid-way (or meet the app's own per-account 429).
    url = stack.url("/api/auth/token")
    responses = burst(url, 10, body={"username": "nobody"})
    assert_limited(responses, allowed=6, retry_after="6")
    assert {r.status_code for r in responses[:6]} == {400}
    # A real login from the same address is turned away too, before anything is hashed.
    login = requests.post(
        url, json={"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "guess"}, timeout=30
    )
    assert_limited([login], allowed=0, retry_after="6")
    assert stack.get("/api/products").status_code == 200


def test_the_admin_login_shares_the_login_limit(stack, limited):
    # Both logins cost a password hash, so they share one bucket: alternating the two does not
    # double the rate. Django's own answers to these posts are 400 (no password: nothing hashed,
    # so the burst is fast, as above) and the CSRF 403.
    responses = []
    with requests.Session() as session:
        for i in range(10):
            if i % 2:
                responses.append(
                    session.post(stack.url("/admin/login/"), data={"username": "x"}, timeout=30)
                )
            else:
                body = {"username": "nobody"}
                responses.append(session.post(stack.url("/api/auth/token"), json=body, timeout=30))
    assert_limited(responses, allowed=6, retry_after="6")
    assert {r.status_code for r in responses[:6]} == {400, 403}
    assert [r.status_code for r in responses[6:]] == [429] * 4


def test_writes_are_limited_per_address(stack, limited):
    # Untrusted X-Forwarded-For (NGINX_REAL_IP_FROM empty): a new claimed address per request
    # changes nothing, the connection's address is counted.
    writes = burst(
        stack.url("/api/orders"),
        WRITES_BURST,
        body={"items": []},
        forwarded_for=lambda i: f"198.51.100.{i}",
    )
    assert_limited(writes, allowed=21, retry_after="1")
    # Django's own answer to an anonymous order: it saw each of these.
    assert {r.status_code for r in writes[:21]} <= {401, 403}


def test_report_requests_have_a_limit_of_their_own(stack, limited):
    # The writes' zone lifted, so a 429 here can only be the reports' zone: 6r/m with a burst
    # of 3, so four requests pass at once and the next wait 10 s each.
    limited(NGINX_RATE_WRITES="100000r/s")
    reports = burst(stack.url("/api/reports"), 8, body={})
    assert_limited(reports, allowed=4, retry_after="10")
    assert {r.status_code for r in reports[:4]} <= {401, 403}


def test_a_trusted_proxy_reports_the_client_address(stack, limited):
    limited(NGINX_REAL_IP_FROM="0.0.0.0/0")
    # Each client its own bucket: writes each from an address of its own, none limited ...
    spread = burst(
        stack.url("/api/orders"),
        WRITES_BURST,
        body={"items": []},
        forwarded_for=lambda i: f"198.51.100.{i}",
    )
    assert 429 not in [r.status_code for r in spread]
    # ... and one client's writes, through the same proxy, limited as before.
    one = burst(
        stack.url("/api/orders"),
        WRITES_BURST,
        body={"items": []},
        forwarded_for=lambda i: "203.0.113.7",
    )
    assert_limited(one, allowed=21, retry_after="1")

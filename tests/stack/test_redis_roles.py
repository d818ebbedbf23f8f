"""The cache and the broker are separate Redis instances: clients choose the page cache's keys
(page x page size), so a full cache must never refuse the broker's publishes.

The cache instance (`redis-cache`, allkeys-lru) is filled past a maxmemory lowered for the test;
orders, their emails and a report then go through the broker instance (`redis`, noeviction) as
before, and the cache evicted instead of refusing. Each test puts the limit back in `finally`:
the session shares one stack.
"""

import re

from tests.stack.test_background import (
    ask_report,
    catcher,
    customer,
    expected_confirmations,
    place_order,
    product,
    wait_finished,
    wait_for_mail,
)

CACHE = "redis-cache"
BROKER = "redis"
FILL_KEY_BYTES = 1024
FILL_BATCH = 2_000
FILL_BATCHES = 8  # 16 MB written into a cache allowed 4 MB more than it holds
HEADROOM = 4 * 1024 * 1024

# Writes fill:<from>..fill:<to>, each FILL_KEY_BYTES with a TTL: nothing outlives the test long.
FILL = (
    "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do "
    "redis.call('SET', 'fill:' .. i, string.rep('x', tonumber(ARGV[3])), 'EX', 600) end "
    "return 1"
)
UNFILL = (
    "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('UNLINK', 'fill:' .. i) end "
    "return 1"
)


def cli(stack, service: str, *args: str, check: bool = True) -> str:
    """redis-cli inside the service's container, authenticated from its own environment."""
    script = 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --no-auth-warning "$@"'
    return stack.compose(
        "exec", "-T", service, "sh", "-c", script, "redis-cli", *args, check=check
    ).stdout


def info(stack, service: str, section: str) -> dict[str, str]:
    return dict(
        line.strip().split(":", 1)
        for line in cli(stack, service, "INFO", section).splitlines()
        if ":" in line
    )


def oom_refusals(stack, service: str) -> int:
    # errorstat_OOM:count=N counts the commands refused for memory since the server started.
    match = re.search(r"count=(\d+)", info(stack, service, "errorstats").get("errorstat_OOM", ""))
    return int(match.group(1)) if match else 0


def test_a_full_cache_refuses_nothing_the_broker_carries(stack):
    refused_before = oom_refusals(stack, BROKER)
    evicted_before = int(info(stack, CACHE, "stats")["evicted_keys"])
    limit = cli(stack, CACHE, "CONFIG", "GET", "maxmemory").split()[1]
    used = int(info(stack, CACHE, "memory")["used_memory"])
    cli(stack, CACHE, "CONFIG", "SET", "maxmemory", str(used + HEADROOM))
    try:
        for batch in range(FILL_BATCHES):
            first = batch * FILL_BATCH + 1
            last = first + FILL_BATCH - 1
            # A Redis that refuses the writes (noeviction) answers OOM: not this test's failure,
            # what follows is.
            cli(stack, CACHE, "-n", "2", "EVAL", FILL, "0", str(first), str(last),
                str(FILL_KEY_BYTES), check=False)  # fmt: skip

        # The full cache costs the catalogue nothing: pages are served (and cached by eviction).
        for size in (10, 20, 50):
            assert stack.get(f"/api/products?page_size={size}").status_code == 200

        headers, address, _ = customer(stack)
        product_id = product(stack)
        order_ids = [place_order(stack, headers, product_id) for _ in range(3)]
        wait_for_mail(stack, address, expected_confirmations(order_ids), timeout=60)

        report_id = ask_report(stack, headers, 2013)
        status = wait_finished(stack, headers, report_id)
        assert status["state"] == "done", status
        ready = [m for m in catcher(stack, address) if "report" in m["subject"]]
        assert [m["subject"] for m in ready] == [f"Your sales report {report_id} is ready"]
        # The cache made room by evicting, not by refusing.
        assert int(info(stack, CACHE, "stats")["evicted_keys"]) > evicted_before
    finally:
        cli(stack, CACHE, "CONFIG", "SET", "maxmemory", limit)
        cli(stack, CACHE, "-n", "2", "EVAL", UNFILL, "0", "1",
            str(FILL_BATCH * FILL_BATCHES), check=False)  # fmt: skip
    assert oom_refusals(stack, BROKER) == refused_before

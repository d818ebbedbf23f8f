"""The scenarios of `make bench`, one module each (numbered as in docs/BENCHMARKS.md).

A module's `section(results, headline)` renders its part of docs/BENCHMARKS.md and adds its
headline rows; one with a STEP also has `measure(results)`, the run step that BENCH_ONLY names.
Scenarios 3 and 4 are measured inside scenario 1's step, in the same rounds."""

from bench.scenarios import (
    budget,
    cached_list,
    clients,
    detail,
    fanout,
    images,
    list_cache,
    login_flood,
    observability,
    orders,
    pgbouncer,
    preload,
    profiles,
    reports,
    sequential,
)

# In the order they run: scenario 8 (images) and 13 (the web image's budget, read from its files)
# last, after every load, so that building the single-stage stand-in takes no CPU from a
# measurement.
MEASURED = (fanout, clients, preload, pgbouncer, reports, observability, login_flood, sequential,
            profiles, list_cache, orders, images, budget)  # fmt: skip
# In the order of docs/BENCHMARKS.md, up to "Found along the way"; scenario 8 comes after it.
REPORTED = (fanout, clients, detail, cached_list, preload, pgbouncer, reports, observability,
            login_flood, sequential, profiles, list_cache, orders)  # fmt: skip
AFTER_FOUND = (images, budget)

"""Endpoints for `make bench` only (bench/). config/urls.py routes them only when
BENCH_ENDPOINTS=true, which only bench/compose.bench.yml sets."""

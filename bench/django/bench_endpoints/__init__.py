"""Endpoints for `make bench` only (bench/): routed by bench_urls, which only bench_settings
names, in the bench image only."""

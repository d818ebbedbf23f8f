"""`make bench`: the stack's performance claims measured on this machine (docs/BENCHMARKS.md)."""

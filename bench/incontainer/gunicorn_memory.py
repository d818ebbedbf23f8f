"""Scenario 5, inside web: RSS, PSS and USS of the Gunicorn master and of each worker, as one
JSON line."""

import json

from process_tree import process_tree  # inlined: bench/incontainer/__init__.py
from smaps import rollup  # inlined: bench/incontainer/__init__.py

master, children = process_tree("gunicorn")
workers = [rollup(pid) for pid in children]
print(json.dumps({"master": rollup(master), "workers": workers}))

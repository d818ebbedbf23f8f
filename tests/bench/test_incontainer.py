"""The scripts `make bench` and `make soak` run inside containers (bench/incontainer/): each one
whole once its helpers are inlined, and the process-tree and RSS readers right on this host's
/proc. `make bench` itself runs them in the stack."""

import ast
import json
import subprocess
import sys
import time
import uuid

import pytest

from bench import incontainer

SCRIPTS = ("fork_cost", "gunicorn_memory", "pgbouncer_crowd", "report_memory", "worker_rss")


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_is_whole_once_inlined(name: str) -> None:
    source = incontainer.script(name)
    assert "# inlined" not in source
    compile(source, name, "exec")


def test_the_process_tree_finds_a_master_and_its_children() -> None:
    marker = f"bench-tree-{uuid.uuid4().hex}"
    child = f"import time; time.sleep(30)  # {marker}"
    parent = (
        "import subprocess, sys, time\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
        "time.sleep(30)\n"
    )
    master = subprocess.Popen([sys.executable, "-c", parent, marker])
    try:
        deadline = time.monotonic() + 10
        probe = incontainer.script("process_tree") + f"\nprint(process_tree({marker!r}))\n"
        while True:
            out = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
            found, children = ast.literal_eval(out)
            if len(children) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found == master.pid
        assert len(children) == 2
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)
        master.wait(timeout=10)


def test_the_rss_sample_is_one_json_line() -> None:
    out = subprocess.run(
        [sys.executable, "-c", incontainer.script("worker_rss")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sample = json.loads(out.strip().splitlines()[-1])
    assert sample["master_kb"] >= 0
    assert all(kb >= 0 for kb in sample["workers_kb"].values())

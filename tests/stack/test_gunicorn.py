"""Gunicorn's settings seen in the running web container, not read from its config file."""

import json
import re
import subprocess
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.stack

# Inside the web container: the Gunicorn master's PID and the PIDs of the Python processes
# running Gunicorn (not the init process whose command line names it).
GUNICORN_MASTER = r"""
import json, os
def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
def cmd(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()
pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
gunicorn = [p for p in pids if "gunicorn" in cmd(p) and "python" in os.readlink(f"/proc/{p}/exe")]
master = min(gunicorn, key=lambda p: (ppid(p) in gunicorn, p))
"""
# Every Gunicorn worker's open files under /dev/shm, and the filesystem /dev/shm is. A worker is
# a child of the master (itself a child of the init).
WORKER_FILES = (
    GUNICORN_MASTER
    + r"""
workers = [p for p in gunicorn if ppid(p) == master]
files = {}
for pid in workers:
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    files[pid] = [link for link in links if link.startswith("/dev/shm/")]
mounts = {line.split()[1]: line.split()[2] for line in open("/proc/mounts")}
print(json.dumps({"files": files, "shm": mounts.get("/dev/shm")}))
"""
)


def test_each_worker_heartbeat_file_is_on_tmpfs(stack):
    found = json.loads(stack.compose("exec", "-T", "web", "python3", "-c", WORKER_FILES).stdout)
    assert found["shm"] == "tmpfs"
    assert len(found["files"]) >= 2  # the default profile's workers
    for pid, files in found["files"].items():
        # Gunicorn's WorkerTmp: a file it unlinks at once and keeps open, touched each beat.
        heartbeats = [f for f in files if f.endswith("(deleted)") and "wgunicorn-" in f]
        assert len(heartbeats) == 1, (pid, files)


# Inside the web container: the distinct client connections to Gunicorn's port seen while
# sampling /proc/net/tcp for a few seconds (local port 8000 = 0x1F40, state 01 = established).
UPSTREAM_CONNECTIONS = r"""
import json, sys, time
seen = set()
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.readlines()[1:]:
                local, remote, state = line.split()[1:4]
                if local.endswith(":1F40") and state == "01":
                    seen.add(remote)
    time.sleep(0.02)
print(json.dumps(sorted(seen)))
"""


def test_nginx_reuses_its_upstream_connections(stack):
    """Nginx's upstream keepalive: a thousand requests ride on a few connections to Gunicorn,
    not one each."""
    sampler = subprocess.Popen(
        ["docker", "compose", "exec", "-T", "web", "python3", "-c", UPSTREAM_CONNECTIONS, "12"],
        env=stack.env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    sent = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(100):
                response = session.get(stack.url("/healthz"), timeout=10)
                sent.append(response.status_code)

    try:
        time.sleep(2)  # the sampler's docker exec starts
        threads = [threading.Thread(target=client) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        out, _ = sampler.communicate(timeout=60)
    finally:
        sampler.kill()
    connections = json.loads(out)
    assert sent.count(200) == 1000
    # At most keepalive (32) idle per Nginx worker, plus those opened for the concurrency.
    assert 0 < len(connections) <= 64, len(connections)


def test_a_stopping_web_worker_closes_its_database_connections(stack):
    """The ASGI lifespan's shutdown (runtime/lifespan.py): after the drain, each worker ends the
    connections its request threads kept (DB_CONN_MAX_AGE) with PostgreSQL's Terminate, so
    PgBouncer sees every web client say goodbye ("client close request"), none vanish ("client
    unexpected eof", what a process that just exits leaves): PGBOUNCER_LOG_DISCONNECTIONS, on for
    the suite (tests/stack/conftest.py), logs how each client left."""
    customer = stack.token("lifespan-customer")
    web_address = stack.compose(
        "exec", "-T", "web", "python3", "-c",
        "import socket; print(socket.gethostbyname(socket.gethostname()))",
    ).stdout.strip()  # fmt: skip
    since = stack.compose("exec", "-T", "pgbouncer", "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout
    # Connections to both databases on several request threads: token checks on the primary,
    # the orders from the replica.
    with requests.Session() as session:
        for _ in range(20):
            response = session.get(stack.url("/api/orders"), headers=customer, timeout=10)
            assert response.status_code == 200, response.text
    stack.compose("restart", "web")
    stack.wait_ready()
    logs = stack.compose("logs", "--no-color", "--since", since.strip(), "pgbouncer").stdout
    reasons = [
        line.split("closing because: ", 1)[1].split(" (age", 1)[0]
        for line in logs.splitlines()
        if f"@{web_address}:" in line and "closing because: " in line
    ]
    assert "client close request" in reasons, logs[-3000:]
    assert "client unexpected eof" not in reasons, reasons
    web_logs = stack.compose("logs", "--no-color", "--since", since.strip(), "web").stdout
    # Each worker's own account of it (two workers, each with threads that held connections).
    closing = re.findall(
        r"worker stopping: closed \d+ long-lived clients, (\d+) database connections", web_logs
    )
    assert len(closing) >= 2, web_logs[-3000:]
    assert sum(map(int, closing)) > 0, closing
    assert "lifespan' protocol appears unsupported" not in web_logs


# Inside the web container: the Gunicorn master's threads, and the remote ends of its TCP
# connections (the listening socket has none).
MASTER_STATE = (
    GUNICORN_MASTER
    + r"""
inodes = set()
for fd in os.listdir(f"/proc/{master}/fd"):
    link = os.readlink(f"/proc/{master}/fd/{fd}")
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
remote = []
for table in ("tcp", "tcp6"):
    for line in open(f"/proc/{master}/net/{table}").read().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
            remote.append(int(fields[2].rsplit(":", 1)[1], 16))
print(json.dumps({"threads": len(os.listdir(f"/proc/{master}/task")), "remote_ports": remote}))
"""
)


def test_the_master_serves_its_warm_up_paths_and_forks_with_no_thread_or_connection(stack):
    # config/preload.py: the master serves GUNICORN_PRELOAD_WARM_PATHS (the product list reads
    # the replica and the cache) and ends what that started before it forks its workers.
    logs = stack.compose("logs", "--no-log-prefix", "web").stdout
    said = [line for line in logs.splitlines() if "preload: structures built" in line]
    assert said, logs[-2000:]
    assert "warm-up: 4 requests served (200, 200, 200, 200)" in said[-1], said[-1]
    state = json.loads(stack.compose("exec", "-T", "web", "python3", "-c", MASTER_STATE).stdout)
    assert state == {"threads": 1, "remote_ports": []}, state

"""The monitoring profile on the running stack (issue 16): every scrape target up and each
exporter's data queryable; nothing of it reachable through the public Nginx; and five failures
provoked for real (the replica stopped, the reports worker stopped, web stopped under requests
(Nginx's own 502s), a request hung past Gunicorn's timeout) and a filesystem filled (a small tmpfs
volume, seen by node-exporter), each firing its alert, mailed by Alertmanager to the mail
catcher, and resolved (mailed again) after recovery. The database exporters log in with their
own least-privilege logins (a pg_monitor role that reads no app table, PgBouncer's stats user)
and no exporter holds a password in its command line.

The monitoring services join the session's stack for this module only, on a test clock: scrapes
and rule evaluations every 2s and every duration in the rules divided by ALERT_TIME_SCALE (30:
a `for: 1m` is 2s, a 10-minute window 20s). The rules file itself is the production one.
"""

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.stack.test_faults import FAULTS, build_fault_image
from tests.support import MONITORING_SERVICES, ROOT, image, run, wait_until

SERVICES = MONITORING_SERVICES
EXPORTERS = SERVICES[3:]
TEST_CLOCK = {
    "PROMETHEUS_SCRAPE_INTERVAL": "2s",
    "PROMETHEUS_EVALUATION_INTERVAL": "2s",
    "ALERT_TIME_SCALE": "30",
    "ALERTMANAGER_GROUP_WAIT": "1s",
    "ALERTMANAGER_GROUP_INTERVAL": "2s",
    "ALERTMANAGER_REPEAT_INTERVAL": "1h",
    "FLOWER_PURGE_OFFLINE_WORKERS": "10",
}
FLOWER_AUTH = ("admin", "dev-only-flower")
CATCHER = "http://mailcatcher:8025/messages"
# Jobs of monitoring/prometheus.yml and how many targets each has on the default stack.
TARGETS = {
    "prometheus": 1,
    "alertmanager": 1,
    "web": 1,
    "celery-worker": 3,
    "flower": 1,
    "postgres": 2,
    "pgbouncer": 1,
    "redis": 1,
    "redis-cache": 1,
    "nginx": 1,
    "nginx-log": 1,
    "node": 1,
}


@dataclass(frozen=True)
class Monitoring:
    stack: Any
    env: dict[str, str]

    def port(self, name: str) -> int:
        return int(self.env[name])

    def compose(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
        return run(
            "docker", "compose", *args, cwd=ROOT, env={**self.env, **(env or {})}, timeout=timeout,
        ).stdout  # fmt: skip

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port('PROMETHEUS_PORT')}/api/v1/query"
        body = requests.get(url, params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port('PROMETHEUS_PORT')}/api/v1/targets"
        return list(requests.get(url, timeout=10).json()["data"]["activeTargets"])

    def mail(self) -> list[dict[str, Any]]:
        script = (
            "import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        )
        # From the default worker (the web image, on the backend network): web itself is
        # stopped by one of the faults below.
        out = self.compose("exec", "-T", "worker", "python3", "-c", script, CATCHER)
        return list(json.loads(out))

    def last_mail_id(self) -> int:
        return max((m["id"] for m in self.mail()), default=0)


@pytest.fixture(scope="module")
def monitoring(stack) -> Iterator[Monitoring]:
    # Host ports next to the stack's own, apart from other stacks' (STACK_PORT differs by < 100).
    env = {
        **TEST_CLOCK,
        **stack.env(),
        "COMPOSE_PROFILES": "monitoring",
        "PROMETHEUS_PORT": str(stack.port + 100),
        "ALERTMANAGER_PORT": str(stack.port + 200),
        "FLOWER_PORT": str(stack.port + 300),
    }
    m = Monitoring(stack, env)
    try:
        m.compose("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "180", *SERVICES)
        # Nginx sends its status copy to nginx-log-exporter only if that name resolved when it
        # started (nginx/entrypoint.sh): started before it, Nginx is restarted now.
        restart_nginx(m)
        yield m
    finally:
        m.compose("rm", "--stop", "--force", "--volumes", *SERVICES)
        # And again without it, so the rest of the session's Nginx sends nothing to a gone host.
        restart_nginx(m)
        # Named volumes of a profile's services outlive the session's `down --volumes`.
        names = ("prometheus-data", "alertmanager-data", "disk-probe")
        volumes = [f"{stack.project}_{name}" for name in names]
        run("docker", "volume", "rm", "--force", *volumes)


def restart_nginx(monitoring: Monitoring) -> None:
    monitoring.compose("restart", "nginx")
    monitoring.stack.wait_ready()


def by_job(targets: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for target in targets:
        found.setdefault(target["labels"]["job"], []).append(target["health"])
    return found


def test_every_scrape_target_is_up(monitoring):
    def all_up() -> dict[str, list[str]] | None:
        jobs = by_job(monitoring.targets())
        counts = {job: len(health) for job, health in jobs.items()}
        if counts == TARGETS and all(h == "up" for health in jobs.values() for h in health):
            return jobs
        return None

    wait_until(all_up, timeout=60, what=f"every target up: {TARGETS}")


# One query per source, each returning data from the stack as it runs.
QUERIES = {
    "postgres primary": 'pg_up{role="primary"} == 1',
    "postgres replica": 'pg_up{role="replica"} == 1',
    "replication lag": 'pg_replication_lag_seconds{role="replica"}',
    "max_connections": "pg_settings_max_connections",
    "pgbouncer": 'pgbouncer_pools_client_maxwait_seconds{database="app"}',
    "redis": 'redis_up{job="redis"} == 1 and redis_memory_max_bytes > 0',
    # The cache instance: evicting, never refusing (redis-cache in docker-compose.yml).
    "redis cache": 'redis_up{job="redis-cache"} == 1 and redis_memory_max_bytes > 0',
    "nginx": "nginx_http_requests_total > 0",
    # /healthz through Nginx (wait_ready) is a 200 in its access log, counted by mtail.
    "nginx log, responses by status": 'nginx_http_responses_total{status="200"} > 0',
    "flower, workers online": "count(flower_worker_online == 1) >= 3",
    # The broker's database; a queue's length (redis_key_size) exists while it holds messages.
    "redis broker db": 'redis_db_keys{db="db0"} > 0',
    "celery worker memory": 'celery_worker_rss_bytes{process="child"} > 0',
    "web requests": "django_http_requests_total",
    "web worker memory": "gunicorn_worker_rss_bytes > 0",
    "worker aborts (0 until one)": "gunicorn_worker_aborts_total",
    "alertmanager": "alertmanager_config_last_reload_successful == 1",
    # The host (node-exporter): the root filesystem, memory, the OOM kill counter.
    "host disk": 'node_filesystem_avail_bytes{mountpoint="/"} > 0',
    "host memory": "node_memory_MemAvailable_bytes > 0 and node_memory_MemTotal_bytes > 0",
    "host oom kills": "node_vmstat_oom_kill",
}


@pytest.mark.parametrize("promql", QUERIES.values(), ids=QUERIES.keys())
def test_a_query_over_each_exporter_returns_data(monitoring, promql):
    wait_until(lambda: monitoring.query(promql), timeout=60, what=promql)


# Paths of every monitoring endpoint, asked of the public Nginx with their services' Host names.
PUBLIC_PATHS = [
    "/metrics",
    "/stub_status",
    "/-/ready",
    "/api/v1/query?query=up",
    "/api/v2/alerts",
    "/graph",
    "/flower/",
    "/healthcheck",
    "/api/workers",
    "/dashboard",
]


@pytest.mark.parametrize("path", PUBLIC_PATHS)
@pytest.mark.parametrize("host", [None, "prometheus:9090", "flower:5555", "nginx:8081"])
def test_monitoring_is_not_reachable_through_the_public_nginx(monitoring, path, host):
    headers = {"Host": host} if host else {}
    response = monitoring.stack.get(path, headers=headers, auth=FLOWER_AUTH)
    assert response.status_code in {400, 404}, (response.status_code, response.text[:200])
    for leak in ("# HELP", "# TYPE", "Active connections", "Prometheus", "Flower", "alertmanager"):
        assert leak not in response.text


def test_uis_are_published_on_loopback_only_and_exporters_not_at_all(monitoring):
    for service, port in [("prometheus", 9090), ("alertmanager", 9093), ("flower", 5555)]:
        published = monitoring.compose("port", service, str(port)).strip()
        assert published.startswith("127.0.0.1:"), (service, published)
    for service in EXPORTERS:
        container = monitoring.compose("ps", "-q", service).strip()
        ports = run("docker", "inspect", "--format", "{{json .HostConfig.PortBindings}}", container)
        assert ports.stdout.strip() in {"{}", "null"}, (service, ports.stdout)


def test_flower_asks_for_its_password(monitoring):
    url = f"http://127.0.0.1:{monitoring.port('FLOWER_PORT')}"
    for path in ("/", "/workers", "/api/workers"):
        assert requests.get(url + path, timeout=10).status_code == 401, path
        wrong = requests.get(url + path, auth=("admin", "wrong"), timeout=10)
        assert wrong.status_code == 401, path
    assert requests.get(url + "/workers", auth=FLOWER_AUTH, timeout=10).status_code == 200
    # /metrics is open in Flower itself (Prometheus scrapes it on the backend network).
    assert "flower_worker_online" in requests.get(url + "/metrics", timeout=10).text


# --- provoked alerts ------------------------------------------------------------------------


def firing(monitoring: Monitoring, alert: str, **labels: str) -> bool:
    matchers = ",".join([f'alertname="{alert}"', 'alertstate="firing"'] + [
        f'{k}="{v}"' for k, v in labels.items()
    ])  # fmt: skip
    return bool(monitoring.query(f"ALERTS{{{matchers}}}"))


def mail_about(
    monitoring: Monitoring, after: int, status: str, alert: str, to: str, *words: str
) -> dict[str, Any] | None:
    for message in monitoring.mail():
        subject = message["subject"]
        if (
            message["id"] > after
            and subject.startswith(f"[{status}")
            and f"] {alert} " in subject
            and to in message["rcpt_tos"]
            and all(word in subject for word in words)
        ):
            return message
    return None


def provoke(
    monitoring: Monitoring,
    alert: str,
    to: str,
    words: tuple[str, ...],
    fault: Callable[[], None],
    recover: Callable[[], None],
    labels: dict[str, str] | None = None,
) -> None:
    """fault() fires `alert`, mailed to `to`; recover() resolves it, mailed again. `labels`
    narrow "firing" to the provoked alert's series (the host's others may fire on their own)."""
    labels = labels or {}

    def settled() -> bool:
        # Not firing, and the last mail about it (a start-up blip's) is not a FIRING one: an
        # alert that fires again before its RESOLVED mail went out is never mailed twice.
        about = [m["subject"] for m in monitoring.mail() if f"] {alert} " in m["subject"]]
        about = [s for s in about if all(word in s for word in words)]
        quiet = not firing(monitoring, alert, **labels)
        return quiet and (not about or about[-1].startswith("[RESOLVED"))

    wait_until(settled, timeout=120, what=f"{alert} quiet before the fault")
    start = monitoring.last_mail_id()
    try:
        fault()
        fired = wait_until(
            lambda: mail_about(monitoring, start, "FIRING", alert, to, *words),
            timeout=120,
            what=f"a FIRING mail for {alert} to {to}",
        )
    finally:
        recover()
    wait_until(
        lambda: mail_about(monitoring, fired["id"], "RESOLVED", alert, to, *words),
        timeout=120,
        what=f"a RESOLVED mail for {alert} to {to}",
    )
    assert not firing(monitoring, alert, **labels)


def test_replica_stopped_fires_postgres_replica_down_and_resolves(monitoring):
    wait_until(
        lambda: monitoring.query('pg_up{role="replica"} == 1'), timeout=60, what="replica up"
    )
    provoke(
        monitoring,
        "PostgresReplicaDown",
        "ops@localhost",
        ("replica",),
        fault=lambda: monitoring.compose("stop", "db-replica"),
        recover=lambda: monitoring.compose("start", "db-replica"),
    )


def test_reports_worker_stopped_fires_celery_queue_without_worker_and_resolves(monitoring):
    wait_until(
        lambda: (
            not firing(monitoring, "CeleryQueueWithoutWorker")
            and monitoring.query('flower_worker_online{worker=~"reports@.+"} == 1')
        ),
        timeout=90,
        what="the reports worker online and no queue alert",
    )
    provoke(
        monitoring,
        "CeleryQueueWithoutWorker",
        "oncall@localhost",
        ("reports",),
        fault=lambda: monitoring.compose("stop", "worker-reports", timeout=420),
        recover=lambda: monitoring.compose("start", "worker-reports"),
    )


def recreate_web(monitoring: Monitoring, **env: str) -> None:
    """Web recreated with this environment on top of the stack's; then Nginx restarted, since it
    resolves web's address only when it starts."""
    monitoring.compose(
        "up", "--detach", "--no-deps", "--wait", "--wait-timeout", "120", "web", env=env
    )
    monitoring.compose("restart", "nginx")
    monitoring.stack.wait_ready()


def test_a_request_hung_past_gunicorn_timeout_fires_worker_timeout_and_resolves(monitoring):
    # A 10s timeout instead of 30s: the same kill, sooner.
    build_fault_image(monitoring.stack)
    faults = {**FAULTS, "GUNICORN_TIMEOUT": "10"}
    recreate_web(monitoring, **faults)
    try:
        # The new container scraped at least twice with its abort counter at 0: increase() sees
        # the step to 1, not a series that starts at 1.
        zero = 'gunicorn_worker_aborts_total{reason="timeout"}'
        wait_until(
            lambda: monitoring.query(
                f"max_over_time({zero}[6s]) == 0 and count_over_time({zero}[6s]) >= 2"
            ),
            timeout=60,
            what="web's abort counter scraped at 0",
        )

        def hang() -> None:
            response = monitoring.stack.get("/faults/hang?seconds=60", timeout=60)
            assert response.status_code == 504, response.text

        provoke(
            monitoring,
            "GunicornWorkerTimeout",
            "ops@localhost",
            ("web",),
            fault=hang,
            recover=lambda: None,  # the worker is replaced; the alert ends with its window
        )
    finally:
        recreate_web(monitoring)


def nginx_5xx(monitoring: Monitoring) -> float:
    result = monitoring.query('sum(nginx_http_responses_total{status=~"5.."}) or vector(0)')
    return float(result[0]["value"][1])


def test_web_stopped_makes_nginx_502s_counted_and_fires_nginx_5xx_ratio_and_resolves(monitoring):
    """The 502 storm at the edge: web stopped, every request gets Nginx's own 502 (Django
    never sees them); mtail counts them from Nginx's syslog copy, Prometheus sees the counter
    rise, and Nginx5xxRatioHigh fires, is mailed on call, and resolves once web is back."""
    wait_until(
        lambda: monitoring.query('nginx_http_responses_total{status="200"} > 0'),
        timeout=60,
        what="Nginx's 200s counted before the fault",
    )
    before = nginx_5xx(monitoring)
    stop = threading.Event()
    statuses: list[int] = []

    def storm() -> None:
        # Bounded: at most 400 requests and 180 s, one at a time.
        deadline = time.monotonic() + 180
        while not stop.is_set() and len(statuses) < 400 and time.monotonic() < deadline:
            statuses.append(monitoring.stack.get("/api/products", timeout=15).status_code)
            stop.wait(0.2)

    client = threading.Thread(target=storm, daemon=True)

    def fault() -> None:
        monitoring.compose("stop", "web")
        client.start()

    def recover() -> None:
        stop.set()
        client.join(timeout=30)
        # Started again (perhaps at a new address): Nginx restarted to resolve it.
        recreate_web(monitoring)

    provoke(monitoring, "Nginx5xxRatioHigh", "oncall@localhost", ("nginx-log",), fault, recover)
    assert statuses
    # Nginx's 502 whether the connect is refused or times out (a stopped container's address
    # answers nothing): never a 504, which says the application took too long.
    assert set(statuses) == {502}, statuses
    # Every one of them counted (one UDP datagram each, on the same host's bridge).
    assert nginx_5xx(monitoring) >= before + len(statuses), (before, len(statuses))


DISK_PROBE = ROOT / "tests" / "stack" / "disk-probe.compose.yml"


def in_probe(monitoring: Monitoring, volume: str, script: str) -> None:
    """Runs `script` in a throwaway container (the monitoring image, hardened, no network) with
    the probe volume at /probe."""
    run(
        "docker", "run", "--rm", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true", "--network", "none",
        "--user", "10008:10008", "-v", f"{volume}:/probe", "--entrypoint", "sh",
        image("monitoring"), "-c", script, timeout=60,
    )  # fmt: skip


def test_a_filesystem_filled_past_90_percent_fires_host_disk_almost_full_and_resolves(monitoring):
    """A full disk, one of the seeds' 502 causes, on a filesystem of its own: node-exporter is
    recreated with an 8 MiB tmpfs volume (tests/stack/disk-probe.compose.yml), another container
    fills it to over 90%, HostDiskAlmostFull fires for that mount point and is mailed; the file
    deleted, it resolves and is mailed again. The host's real disks are never written."""
    volume = f"{monitoring.stack.project}_disk-probe"
    files = f"{ROOT / 'docker-compose.yml'}:{DISK_PROBE}"

    def exporter(env: dict[str, str]) -> None:
        monitoring.compose(
            "up", "--detach", "--no-deps", "--wait", "--wait-timeout", "60", "node-exporter",
            env=env,
        )  # fmt: skip

    exporter({"COMPOSE_FILE": files})
    try:
        space = f'node_filesystem_avail_bytes{{mountpoint=~".*/{volume}/_data"}}'
        found = wait_until(
            lambda: monitoring.query(f"{space} > 0"), timeout=60, what="the probe's space scraped"
        )
        mountpoint = found[0]["metric"]["mountpoint"]
        provoke(
            monitoring,
            "HostDiskAlmostFull",
            "ops@localhost",
            (volume,),
            # 7.8 MB of the 8 MiB: about 7% left, under the alert's 10%.
            fault=lambda: in_probe(monitoring, volume, "head -c 7800000 /dev/zero > /probe/fill"),
            recover=lambda: in_probe(monitoring, volume, "rm -f /probe/fill"),
            labels={"mountpoint": mountpoint},
        )
    finally:
        # Back to the service as docker-compose.yml has it, then the probe volume removed.
        exporter({})
        run("docker", "volume", "rm", "--force", volume)


# --- least privilege: the database exporters' own logins, their secrets as files ---------------

DB_EXPORTERS = ("postgres-exporter-primary", "postgres-exporter-replica", "pgbouncer-exporter")
# Every /proc entry's command line, one a line (NULs as spaces).
CMDLINES = 'for d in /proc/[0-9]*; do tr "\\000" " " < "$d/cmdline" 2>/dev/null; echo; done'
# The environment of each exporter process (not the container's init, PID 1, nor this shell).
EXPORTER_ENVIRON = (
    'for d in /proc/[0-9]*; do case $(tr "\\000" " " < "$d/cmdline" 2>/dev/null) in '
    'prometheus-*) tr "\\000" "\\n" < "$d/environ"; echo;; esac; done'
)


def container_env(monitoring: Monitoring, service: str) -> dict[str, str]:
    container = monitoring.compose("ps", "-q", service).strip()
    raw = run("docker", "inspect", "--format", "{{json .Config.Env}}", container).stdout
    return dict(item.split("=", 1) for item in json.loads(raw))


def stack_passwords(monitoring: Monitoring) -> dict[str, str]:
    """Every *_PASSWORD the data services and the exporters were given, by name."""
    found: dict[str, str] = {}
    for service in ("db-primary", "pgbouncer", "redis", *EXPORTERS):
        for name, value in container_env(monitoring, service).items():
            if name.endswith("PASSWORD") and value:
                found[name] = value
    return found


def psql_on_primary(monitoring: Monitoring, user_var: str, password_var: str, sql: str):
    """psql over TCP in db-primary as the role and password of its own env's variables."""
    script = (
        f'PGPASSWORD="${password_var}" psql -h 127.0.0.1 -U "${user_var}" -d app '
        f'-XAtq -v ON_ERROR_STOP=1 -c "{sql}"'
    )
    return run(
        "docker", "compose", "exec", "-T", "db-primary", "sh", "-c", script,
        cwd=ROOT, env=monitoring.env, check=False, timeout=60,
    )  # fmt: skip


def test_database_exporters_scrape_with_their_own_logins_not_the_apps(monitoring):
    for promql in ('pg_up{role="primary"} == 1', 'pg_up{role="replica"} == 1', "pgbouncer_up == 1"):
        wait_until(lambda q=promql: monitoring.query(q), timeout=60, what=promql)
    # Postgres sees the exporters as the monitoring role, on the primary and the replica.
    sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'monitoring'"
    for server in ("db-primary", "db-replica"):
        wait_until(
            lambda s=server: int(monitoring.stack.psql(s, sql)) > 0,
            timeout=30,
            what=f"the exporter logged in to {server} as monitoring",
        )
    # The app's password is handed to none of them.
    for service in DB_EXPORTERS:
        env = container_env(monitoring, service)
        assert "DB_PASSWORD" not in env, service
        assert "dev-only-app" not in env.values(), service


def test_the_monitoring_role_is_pg_monitor_and_reads_no_app_table(monitoring):
    as_monitoring = ("MONITORING_DB_USER", "MONITORING_DB_PASSWORD")
    member = psql_on_primary(
        monitoring, *as_monitoring, "SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER')"
    )
    assert member.stdout.strip() == "t", member.stderr
    for table in ("shop_product", "shop_order", "accounts_user"):
        # The app's role reads it: the refusal below is the monitoring role's, not a lost table.
        own = psql_on_primary(monitoring, "DB_USER", "DB_PASSWORD", f"SELECT count(*) FROM {table}")
        assert own.returncode == 0, own.stderr
        refused = psql_on_primary(monitoring, *as_monitoring, f"SELECT 1 FROM public.{table}")
        assert refused.returncode != 0, table
        assert "permission denied" in refused.stderr, refused.stderr
    created = psql_on_primary(monitoring, *as_monitoring, "CREATE TABLE public.intruder (id int)")
    assert "permission denied" in created.stderr, created.stderr


def test_no_exporter_has_a_password_in_its_command_line(monitoring):
    passwords = stack_passwords(monitoring)
    assert {"DB_PASSWORD", "REDIS_PASSWORD"} <= set(passwords)
    for service in EXPORTERS:
        lines = monitoring.compose("exec", "-T", service, "sh", "-c", CMDLINES).splitlines()
        assert any(line.startswith(("prometheus-", "mtail")) for line in lines), (service, lines)
        for line in lines:
            for name, value in passwords.items():
                assert value not in line, f"{service}: {name} in {line!r}"
            # No user:password@ of a connection string either.
            assert re.search(r"://[^/@\s:]+:[^/@\s]+@", line) is None, f"{service}: {line!r}"


def test_database_exporters_read_their_password_from_a_file_not_their_environment(monitoring):
    passwords = stack_passwords(monitoring)
    for service in DB_EXPORTERS:
        environ = monitoring.compose("exec", "-T", service, "sh", "-c", EXPORTER_ENVIRON)
        assert environ.strip(), service
        for name, value in passwords.items():
            assert value not in environ, f"{service}: {name} in the exporter's environment"
        assert "_FILE=/tmp/monitoring/" in environ or "PGPASSFILE=/tmp/monitoring/" in environ

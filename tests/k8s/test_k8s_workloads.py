"""Each workload of the rendered stack: security, resources, probes, rollouts, shutdown, scaling."""

import re

import pytest

from tests.connection_budget import Budget
from tests.k8s.manifests import (
    IMAGE_UIDS,
    NAMESPACE,
    ROOT,
    STAND_INS,  # demo-shop
    Container,
    Manifests,
    image_name,
    image_tag,
    labels_match,
    quantity,
)

QUEUES = (
    "default",
    "reports",  # demo-shop
    "email",
)
# Hard time limits per queue (the assumption; the default queue's tasks are short).
HARD_TIME_LIMITS = {
    "default": 30,
    "reports": 330,  # demo-shop
    "email": 60,
}
CELERY_HEALTHCHECK = ["python3", "/opt/celery/healthcheck.py"]
# Paths each image writes to at run time; with a read-only root each must be a volume.
WRITABLE_PATHS = {
    "web": {"/tmp", "/dev/shm"},
    "beat": {"/tmp"},
    "worker": {"/tmp"},
    "migrate": {"/tmp"},
    "wait-for-migrations": {"/tmp"},
    "nginx": {"/tmp"},
    "pgbouncer": {"/tmp"},
    "postgres": {"/var/lib/postgresql/data", "/var/run/postgresql", "/dev/shm", "/tmp"},
    "redis": {"/data", "/tmp"},
    "upstream": {"/tmp"},  # demo-shop
    "exporter": {"/tmp"},
}


def gunicorn_graceful_timeout() -> int:
    text = (ROOT / "app" / "runtime" / "config.py").read_text()  # Gunicorn reads its values there
    match = re.search(r'_number\("GUNICORN_GRACEFUL_TIMEOUT", (\d+)\)', text)
    assert match
    return int(match[1])


def nginx_proxy_read_timeout() -> int:
    match = re.search(r"proxy_read_timeout (\d+)s;", (ROOT / "nginx" / "nginx.conf").read_text())
    assert match
    return int(match[1])


def main_container(manifests: Manifests, workload: str) -> Container:
    return next(c for c in manifests.containers() if c.workload == workload and not c.init)


def test_namespace_enforces_the_restricted_pod_security_standard(deployment: Manifests) -> None:
    labels = deployment.get("Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode


def test_every_pod_runs_as_its_images_fixed_non_root_user(any_variant: Manifests) -> None:
    for doc in any_variant.workloads:
        pod = doc["spec"]["template"]["spec"]
        name = doc["metadata"]["name"]
        images = {image_name(c["image"]) for c in pod["containers"] + pod.get("initContainers", [])}
        assert len(images) == 1, f"{name}: one image per pod, one UID: {images}"
        uid = IMAGE_UIDS[images.pop()]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == uid, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"


def test_every_container_is_locked_down(any_variant: Manifests) -> None:
    for container in any_variant.containers():
        where = f"{container.workload}/{container.name}"
        context = container.spec["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert not context.get("privileged"), where
        # The pod's user applies: no container may override it with another (or root).
        assert (
            "runAsUser" not in context
            or context["runAsUser"] == container.pod["securityContext"]["runAsUser"]
        ), where


def test_writable_paths_are_volumes(any_variant: Manifests) -> None:
    for container in any_variant.containers():
        expected = WRITABLE_PATHS.get(container.name)
        if expected is None:
            continue
        mounts = {m["mountPath"]: m["name"] for m in container.spec.get("volumeMounts", [])}
        missing = expected - set(mounts)
        assert not missing, f"{container.workload}/{container.name}: {missing}"
        volumes = {v["name"]: v for v in container.pod.get("volumes", [])}
        if "/dev/shm" in mounts:
            # Gunicorn's worker_tmp_dir and Postgres' dynamic shared memory: RAM, not disk.
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        for path in ("/tmp", "/var/run/postgresql"):
            if path in mounts:
                assert "emptyDir" in volumes[mounts[path]], f"{container.workload}: {path}"


def test_every_container_has_requests_and_limits(any_variant: Manifests) -> None:
    for container in any_variant.containers():
        where = f"{container.workload}/{container.name}"
        resources = container.spec["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{where}: {resource} {request} > {limit}"


def test_web_has_distinct_startup_liveness_and_readiness_probes(any_variant: Manifests) -> None:
    web = main_container(any_variant, "web").spec
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[web[probe]["httpGet"]["port"]] == 8000, probe
    # /readyz checks each dependency within READYZ_TIMEOUT; the probe must wait longer.
    assert web["readinessProbe"]["timeoutSeconds"] > float(any_variant.config["READYZ_TIMEOUT"])


def test_web_gets_to_start_for_longer_than_its_masters_warm_up_can_take(
    any_variant: Manifests,
) -> None:
    """Gunicorn answers only once its master has warmed up and forked: the startup probe must
    outlast the warm-up's worst case (config/preload.py), with Django's own load on top, or a
    slow database at start would restart the pod into the same wait."""
    from config import preload

    probe = main_container(any_variant, "web").spec["startupProbe"]
    allowed = probe["periodSeconds"] * probe["failureThreshold"]
    worst = (
        preload.DATABASE_PROBE_SECONDS
        + preload.WARM_UP_BUDGET_SECONDS
        + 2 * preload.WARM_UP_GRACE_SECONDS  # the request's, then its thread's
    )
    assert allowed >= worst + 30, (allowed, worst)


# demo-shop: begin
@pytest.mark.parametrize("name", STAND_INS)
def test_stand_ins_probe_healthz_and_get_only_their_own_settings(rendered, name: str) -> None:
    local = rendered("local")
    spec = main_container(local, name).spec
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["path"] == "/healthz", probe
        assert ports[spec[probe]["httpGet"]["port"]] == 8080, probe
    # No ConfigMap, no Secret: a test double needs neither the app's settings nor its passwords.
    assert not spec.get("envFrom")
    assert {e["name"] for e in spec["env"]} == {"UPSTREAM_LATENCY_MS", "UPSTREAM_FAILURE_RATE"}


# demo-shop: end


def test_celery_workers_and_beat_check_their_heartbeat(any_variant: Manifests) -> None:
    for doc in [*any_variant.workers, any_variant.get("Deployment", "beat")]:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        name = doc["metadata"]["name"]
        assert container["livenessProbe"]["exec"]["command"] == CELERY_HEALTHCHECK, name
        assert container["startupProbe"]["exec"]["command"] == CELERY_HEALTHCHECK, name


def test_data_services_use_their_native_checks(any_variant: Manifests) -> None:
    pgbouncer = main_container(any_variant, "pgbouncer").spec
    # The app's database as the app (pgbouncer/Dockerfile): no WARNING in PgBouncer's log per probe.
    assert pgbouncer["readinessProbe"]["exec"]["command"][-1].startswith(
        'pg_isready --host=127.0.0.1 --port=6432 --username="$DB_USER" --dbname="$DB_NAME"'
    )
    assert "tcpSocket" in pgbouncer["livenessProbe"]
    nginx = main_container(any_variant, "nginx").spec
    assert nginx["readinessProbe"]["httpGet"]["path"] == "/nginx-health"
    for name in ("db-primary", "db-replica", "redis"):
        if any_variant.find("StatefulSet", name) is None:
            continue  # swapped for a managed service
        spec = main_container(any_variant, name).spec
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = " ".join(spec[probe]["exec"]["command"])
            if name == "redis":
                assert 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli' in command, probe
                assert "ping" in command, probe
            else:
                # A role the scram line covers: no FATAL line per probe (postgres/Dockerfile).
                assert command.startswith("pg_isready --host=127.0.0.1 --username=healthcheck")


def test_the_cache_redis_evicts_keeps_nothing_and_has_its_own_password(
    any_variant: Manifests,
) -> None:
    """The page cache is a second Redis (clients choose its keys): full, it evicts instead of
    refusing the broker's writes, which the broker's own instance (noeviction) never shares."""
    if any_variant.find("Deployment", "redis-cache") is None:
        assert any_variant.get("Service", "redis-cache")["spec"]["type"] == "ExternalName"
        return
    spec = main_container(any_variant, "redis-cache").spec
    args = spec["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert options["--appendonly"] == "no"
    assert options["--save"] == ""
    assert options["--maxmemory"].endswith("mb")
    [password] = [e for e in spec["env"] if e["name"] == "REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["key"] == "REDIS_CACHE_PASSWORD"
    for probe in ("readinessProbe", "livenessProbe"):
        command = " ".join(spec[probe]["exec"]["command"])
        assert 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli' in command, probe
        assert "ping" in command, probe
    # The broker's instance is not started with any of these.
    if any_variant.find("StatefulSet", "redis") is not None:
        assert not main_container(any_variant, "redis").spec.get("args")
    # Nothing persisted: no claim, only small emptyDirs.
    volumes = any_variant.get("Deployment", "redis-cache")["spec"]["template"]["spec"]["volumes"]
    assert all("emptyDir" in v for v in volumes)
    assert any_variant.get("Service", "redis-cache")["spec"]["ports"][0]["port"] == 6379


def test_rollouts_never_drop_below_capacity(any_variant: Manifests) -> None:
    for doc in any_variant.of_kind("Deployment"):
        name = doc["metadata"]["name"]
        if name == "beat":
            continue
        strategy = doc["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", name
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name
        assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%"), name
        assert doc["spec"]["minReadySeconds"] > 0, name


def test_web_drains_before_gunicorn_stops(any_variant: Manifests) -> None:
    pod = any_variant.get("Deployment", "web")["spec"]["template"]["spec"]
    sleep = main_container(any_variant, "web").spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep > 0
    graceful = int(any_variant.config.get("GUNICORN_GRACEFUL_TIMEOUT", gunicorn_graceful_timeout()))
    assert graceful == 25
    assert pod["terminationGracePeriodSeconds"] > sleep + graceful


def test_nginx_quits_gracefully_after_draining(any_variant: Manifests) -> None:
    pod = any_variant.get("Deployment", "nginx")["spec"]["template"]["spec"]
    command = " ".join(
        main_container(any_variant, "nginx").spec["lifecycle"]["preStop"]["exec"]["command"]
    )
    assert "nginx -s quit" in command
    match = re.search(r"sleep (\d+)", command)
    sleep = int(match[1]) if match else 0
    # Open requests may take up to Nginx's proxy_read_timeout to finish.
    assert pod["terminationGracePeriodSeconds"] > sleep + nginx_proxy_read_timeout()


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_per_queue_outlasts_its_hard_time_limit(any_variant: Manifests, queue: str) -> None:
    doc = any_variant.get("Deployment", f"worker-{queue}")
    pod = doc["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CELERY_QUEUES"] == queue
    assert pod["containers"][0]["command"] == ["/opt/celery/entrypoint.sh", "worker"]
    assert pod["terminationGracePeriodSeconds"] > HARD_TIME_LIMITS[queue]


def test_exactly_one_beat_never_two(any_variant: Manifests) -> None:
    beats = [
        doc
        for doc in any_variant.workloads
        if doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "beat"
    ]
    assert len(beats) == 1
    beat = beats[0]
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "/opt/celery/entrypoint.sh",
        "beat",
    ]
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in any_variant.of_kind("HorizontalPodAutoscaler")
    }
    assert "beat" not in targets


def test_disruption_budgets_cover_web_nginx_and_workers(any_variant: Manifests) -> None:
    budgets = any_variant.of_kind("PodDisruptionBudget")
    for doc in [any_variant.get("Deployment", n) for n in ("web", "nginx")] + any_variant.workers:
        labels = doc["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if labels_match(b["spec"]["selector"], labels)]
        assert len(matching) == 1, doc["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1


def test_autoscalers_own_web_and_worker_replicas(any_variant: Manifests) -> None:
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]
        for h in any_variant.of_kind("HorizontalPodAutoscaler")
    }
    for doc in [any_variant.get("Deployment", "web"), *any_variant.workers]:
        name = doc["metadata"]["name"]
        spec = autoscalers[name]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], name
        # An apply must not reset what the autoscaler chose.
        assert "replicas" not in doc["spec"], name
    assert len(any_variant.workers) == len(QUEUES)


def test_web_and_nginx_spread_over_nodes(any_variant: Manifests) -> None:
    for name in ("web", "nginx"):
        template = any_variant.get("Deployment", name)["spec"]["template"]
        constraints = template["spec"].get("topologySpreadConstraints", [])
        anti = template["spec"].get("affinity", {}).get("podAntiAffinity")
        assert constraints or anti, name
        keys = {c["topologyKey"] for c in constraints}
        assert "kubernetes.io/hostname" in keys, name
        for constraint in constraints:
            assert labels_match(constraint["labelSelector"], template["metadata"]["labels"])


def test_stateful_services_are_statefulsets_with_their_own_volumes(deployment: Manifests) -> None:
    mounts = {"db-primary": "/var/lib/postgresql/data", "db-replica": "/var/lib/postgresql/data"}
    mounts["redis"] = "/data"
    for name, path in mounts.items():
        doc = deployment.get("StatefulSet", name)
        assert doc["spec"]["replicas"] == 1, name
        claims = {c["metadata"]["name"] for c in doc["spec"]["volumeClaimTemplates"]}
        container = doc["spec"]["template"]["spec"]["containers"][0]
        data = [m for m in container["volumeMounts"] if m["mountPath"] == path]
        assert len(data) == 1, name
        assert data[0]["name"] in claims, name
        service = deployment.get("Service", doc["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None", name
    roles = {
        name: {e["name"]: e.get("value") for e in main_container(deployment, name).spec["env"]}
        for name in ("db-primary", "db-replica")
    }
    assert roles["db-primary"]["PG_ROLE"] == "primary"
    assert roles["db-replica"]["PG_ROLE"] == "replica"


@pytest.mark.parametrize("name", ["db-primary", "db-replica"])
def test_postgres_data_directory_is_a_postgres_owned_subdirectory(
    deployment: Manifests, name: str
) -> None:
    # A fresh ext4 volume's root holds lost+found, which initdb refuses; a subPath directory the
    # kubelet creates belongs to root, which initdb cannot chmod. So an init container, as the
    # postgres user, creates the subdirectory with mode 0700 before Postgres starts.
    pod = deployment.get("StatefulSet", name)["spec"]["template"]["spec"]
    (data,) = [
        m
        for m in pod["containers"][0]["volumeMounts"]
        if m["mountPath"] == "/var/lib/postgresql/data"
    ]
    (init,) = pod["initContainers"]
    (volume_root,) = [m for m in init["volumeMounts"] if m["name"] == data["name"]]
    assert "subPath" not in volume_root
    assert init["command"] == [
        "mkdir",
        "-p",
        "-m",
        "0700",
        f"{volume_root['mountPath']}/{data['subPath']}",
    ]
    # Only where the volume root does not match: a recursive chown would add group bits to the
    # data directory, which Postgres refuses.
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_migrations_run_once_per_release_before_new_pods_start(any_variant: Manifests) -> None:
    (job,) = any_variant.of_kind("Job")
    web_image = main_container(any_variant, "web").spec["image"]
    # A new tag is a new Job; the same tag re-applied is the same, finished Job.
    assert job["metadata"]["name"] == f"migrate-{image_tag(web_image)}"
    # The Job's name is its pods' job-name label value.
    assert len(job["metadata"]["name"]) <= 63
    spec = job["spec"]
    assert spec["parallelism"] == spec["completions"] == 1
    assert spec["podReplacementPolicy"] == "Failed"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "manage.py", "migrate", "--noinput"]
    assert container["image"] == web_image
    # New code waits for the schema: web, workers and beat start only once nothing is unapplied.
    for doc in [any_variant.get("Deployment", "web"), any_variant.get("Deployment", "beat")]:
        (init,) = doc["spec"]["template"]["spec"]["initContainers"]
        assert "manage.py migrate --check" in " ".join(init["command"]), doc["metadata"]["name"]
        assert init["image"] == web_image
    for doc in any_variant.workers:
        (init,) = doc["spec"]["template"]["spec"]["initContainers"]
        assert "manage.py migrate --check" in " ".join(init["command"]), doc["metadata"]["name"]


def test_ingress_routes_to_nginx(any_variant: Manifests) -> None:
    (ingress,) = any_variant.of_kind("Ingress")
    service = any_variant.get("Service", "nginx")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "nginx"
            assert backend["port"]["name"] in port_names


def test_production_serves_its_host_over_tls(rendered) -> None:
    production = rendered("production")
    (ingress,) = production.of_kind("Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts
    assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert hosts <= set(production.config["DJANGO_ALLOWED_HOSTS"].split(","))
    assert production.config["APP_ENV"] == "production"


def test_one_pgbouncer_pod_admits_every_client_the_autoscalers_allow(deployment: Manifests) -> None:
    """Each web worker lends up to GUNICORN_REQUEST_THREADS threads at once, each with its own
    connection to each database alias it uses (DB_CONN_MAX_AGE keeps them); each Celery child
    holds one per alias. The Service may send them all to one PgBouncer pod (the other restarting
    or evicted), so one pod's max_client_conn must cover the fleet at its autoscalers' maxima."""
    from runtime.config import REQUEST_THREADS_DEFAULT

    aliases = 2  # default (primary) and replica
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
        for h in deployment.of_kind("HorizontalPodAutoscaler")
    }
    config = deployment.config
    threads = int(config.get("GUNICORN_REQUEST_THREADS") or REQUEST_THREADS_DEFAULT)
    web = autoscalers["web"] * int(config["GUNICORN_WORKERS"]) * threads * aliases
    workers = sum(
        autoscalers[doc["metadata"]["name"]] * int(config["CELERY_CONCURRENCY"]) * aliases
        for doc in deployment.workers
    )
    beat_and_migrate = 2 * aliases
    pgbouncer = deployment.get("Deployment", "pgbouncer")["spec"]["template"]["spec"]
    (container,) = pgbouncer["containers"]
    assert "PGBOUNCER_MAX_CLIENT_CONN" in {item["name"] for item in container["env"]}
    assert web + workers + beat_and_migrate <= int(config["PGBOUNCER_MAX_CLIENT_CONN"])


def pgbouncer_setting(name: str) -> float:
    template = (ROOT / "pgbouncer" / "pgbouncer.ini.template").read_text()
    match = re.search(rf"^{name}\s*=\s*(\S+)", template, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_web_readiness_rides_out_a_burst_instead_of_flapping(any_variant: Manifests) -> None:
    """A burst queues every pod's probe behind the same PgBouncer logins: they fail together.
    NotReady needs failureThreshold failures in a row; the first and the last must lie further
    apart than the longest PgBouncer makes a client wait (query_wait_timeout), and each check
    gets more than the 2s that such a queue exceeds."""
    probe = main_container(any_variant, "web").spec["readinessProbe"]
    readyz_timeout = float(any_variant.config["READYZ_TIMEOUT"])
    assert readyz_timeout > 2
    assert probe["timeoutSeconds"] > readyz_timeout
    span = (probe.get("failureThreshold", 3) - 1) * probe.get("periodSeconds", 10)
    assert span > pgbouncer_setting("query_wait_timeout")
    assert probe.get("successThreshold", 1) == 1


def test_pgbouncer_pools_fit_in_postgres_max_connections_during_a_rollout(
    deployment: Manifests,
) -> None:
    """Every PgBouncer pod a rollout can run at once, each with its pool and reserve, plus any
    Postgres exporter the rendering runs, fit in the slots Postgres admits to the app."""
    pgbouncer = deployment.get("Deployment", "pgbouncer")
    assert not any(
        h["spec"]["scaleTargetRef"]["name"] == "pgbouncer"
        for h in deployment.of_kind("HorizontalPodAutoscaler")
    ), "an autoscaled PgBouncer needs its maximum counted here"
    surge = pgbouncer["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert isinstance(surge, int), "a percentage surge needs rounding up here"
    exporters = [
        c
        for c in deployment.containers()
        if "postgres-exporter" in [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]
    ]
    Budget(
        pgbouncer_pods=int(pgbouncer["spec"].get("replicas", 1)) + surge,
        pool_size=int(deployment.config["PGBOUNCER_POOL_SIZE"]),
        exporters=bool(exporters),
    ).check(deployment.variant)

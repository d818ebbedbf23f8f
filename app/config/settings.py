"""All settings, read from the environment (12-factor). `.env.example` lists every variable."""

import importlib.util
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from config.env import DEV_PREFIX, env_bool, env_float, env_int, env_list, env_secret, env_str

if TYPE_CHECKING:
    from django.http import HttpRequest

BASE_DIR = Path(__file__).resolve().parent.parent

# "production" refuses to start with a missing secret or a development placeholder;
# "local" is what `docker compose up` runs on a fresh clone with no .env.
APP_ENV = env_str("APP_ENV", "local")
if APP_ENV not in {"local", "production", "test"}:
    raise ImproperlyConfigured(f"APP_ENV must be local, production or test, got {APP_ENV!r}")
PRODUCTION = APP_ENV == "production"

SECRET_KEY = env_secret(
    "DJANGO_SECRET_KEY", production=PRODUCTION, dev_default=f"{DEV_PREFIX}insecure-secret-key"
)
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    # Debug pages show settings and stack frames to whoever triggers an error.
    raise ImproperlyConfigured("DJANGO_DEBUG=true is refused with APP_ENV=production.")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Only for /api/docs: as an installed app, django-ninja renders Swagger UI from its own
    # static files (collected, served by Nginx) started by a script file, not from a CDN with an
    # inline script, which the page's Content-Security-Policy blocks.
    "ninja",
    "core",
    "accounts",
    "shop",  # demo-shop
    "reports",  # demo-shop
    "notifications",
    "ops",
]

MIDDLEWARE = [
    # First of all: request ID, X-Request-Duration, slow-request log, metrics, memory guard.
    "runtime.middleware.RequestDiagnosticsMiddleware",
    # Probes and /metrics must answer before host validation and without sessions or the database.
    "runtime.middleware.HealthCheckMiddleware",
    # Errors the API's handlers never see in its JSON shape: a database error outside the API
    # (its 503, not a 500 page), a method the path does not serve (405).
    "core.middleware.JsonErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Tracing on (OTEL_EXPORTER_OTLP_ENDPOINT set, core/tracing.py): name each request's span after
# its Django route. Off: not installed, nothing of OpenTelemetry is imported. The SDK reads the
# variable itself too, for where to export.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
if OTEL_EXPORTER_OTLP_ENDPOINT:
    MIDDLEWARE.insert(0, "core.middleware.RouteSpanMiddleware")
# Which traces are kept (core/tracing.py builds the sampler from these, under OpenTelemetry's
# names). By default a tenth of the requests that start a trace, and a client's traceparent
# decides for its own: tracing every request costs throughput (docs/BENCHMARKS.md, section 9).
OTEL_TRACES_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
OTEL_TRACES_SAMPLER = env_str("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
OTEL_TRACES_SAMPLER_ARG = env_float("OTEL_TRACES_SAMPLER_ARG", 0.1)
if OTEL_TRACES_SAMPLER not in OTEL_TRACES_SAMPLERS or not 0 <= OTEL_TRACES_SAMPLER_ARG <= 1:
    raise ImproperlyConfigured(
        f"OTEL_TRACES_SAMPLER must be one of {', '.join(OTEL_TRACES_SAMPLERS)} and"
        f" OTEL_TRACES_SAMPLER_ARG a ratio from 0 to 1; got {OTEL_TRACES_SAMPLER!r},"
        f" {OTEL_TRACES_SAMPLER_ARG!r}"
    )
# At most this many traces recorded a second in each process under the parentbased_* samplers
# (core/sampling.py: the new traces the ratio keeps, and in web as many again of those a
# client's traceparent asks for, a budget of their own); 0: no cap. Tracing's cost then stops
# growing with the traffic: five a second is a tenth of each worker's requests up to 50 a
# second. A kept trace costs a worker many times what a
# dropped one does (docs/BENCHMARKS.md, section 9, what binds tracing's goal).
TRACES_MAX_PER_SECOND = env_float("TRACES_MAX_PER_SECOND", 5.0)
if not 0 <= TRACES_MAX_PER_SECOND < math.inf:
    raise ImproperlyConfigured(
        "TRACES_MAX_PER_SECOND must be a finite number, 0 (no cap) or more;"
        f" got {TRACES_MAX_PER_SECOND!r}"
    )

# Django Debug Toolbar: only with DEBUG on and the package present, i.e. in `make dev`'s image
# (docker-compose.dev.yml); the production image does not have it. Shown on web's own port, which
# is published on the developer's loopback only (behind Docker's NAT the client address
# INTERNAL_IPS would compare is the bridge gateway's, not theirs), never through Nginx.
DEBUG_TOOLBAR = DEBUG and importlib.util.find_spec("debug_toolbar") is not None
if DEBUG_TOOLBAR:
    INSTALLED_APPS.append("debug_toolbar")
    # After the probes' middleware (they answer before it) and before anything that renders.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("runtime.middleware.HealthCheckMiddleware") + 1,
        "debug_toolbar.middleware.DebugToolbarMiddleware",
    )
    DEBUG_TOOLBAR_CONFIG = {"SHOW_TOOLBAR_CALLBACK": "config.settings.show_debug_toolbar"}


def show_debug_toolbar(request: "HttpRequest") -> bool:
    # Only on web's own port, published on 127.0.0.1 in development: never through Nginx
    # (which sets X-Forwarded-For on every request it passes), where the toolbar's panels
    # would show anyone's recent requests, session keys among them.
    return DEBUG_TOOLBAR and "HTTP_X_FORWARDED_FOR" not in request.META


ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Databases --------------------------------------------------------------------------------
# Django reaches Postgres only through PgBouncer (transaction pooling). "default" is the primary,
# "replica" the streaming standby; PgBouncer names both databases and pools each separately.
_DB_PASSWORD = env_secret("DB_PASSWORD", production=PRODUCTION, dev_default=f"{DEV_PREFIX}app")


def _database(name: str) -> dict[str, object]:
    return {
        # core.postgresql: PostgreSQL with no write committing past its request's deadline.
        "ENGINE": "core.postgresql",
        "NAME": name,
        "USER": env_str("DB_USER", "app"),
        "PASSWORD": _DB_PASSWORD,
        "HOST": env_str("DB_HOST", "pgbouncer"),
        "PORT": env_int("DB_PORT", 6432),
        # Each request's sync work runs on a thread reused across requests (runtime/asgi.py, and
        # Gunicorn's threads under WSGI): keeping its PgBouncer connection saves a SCRAM login
        # per request, PgBouncer's one-core bottleneck under a burst. 60s, checked before reuse
        # (CONN_HEALTH_CHECKS), so a PgBouncer restart costs one failed check, not an error.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        # Transaction pooling gives no session to hold a server-side (named) cursor across fetches.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {
            # Fail fast instead of hanging a worker when PgBouncer is unreachable, yet outlast a
            # login burst: PgBouncer checks SCRAM logins one at a time on one core, so clients
            # connecting at once queue for it; the timeout leaves a wide margin over a crowd's
            # wait (docs/ARCHITECTURE.md, "Figures the settings rest on").
            "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 10),
            # Detect a dead peer on an open connection in seconds, not the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "application_name": env_str("DB_APPLICATION_NAME", "djstack"),
        },
        "TEST": {"NAME": f"test_{name}"},
    }


# Read replicas: PgBouncer's database names, one per streaming standby, in order; Django's
# aliases are "replica", "replica2", ... (core.db_router.replica_aliases). PgBouncer reads the same
# variable (pgbouncer/entrypoint.sh), so the two cannot name different replicas.
DB_REPLICA_NAMES = env_list("DB_REPLICA_NAMES", "app_replica")
if not DB_REPLICA_NAMES or len(set(DB_REPLICA_NAMES)) != len(DB_REPLICA_NAMES):
    raise ImproperlyConfigured("DB_REPLICA_NAMES must name one or more distinct databases")
DATABASES = {"default": _database(env_str("DB_NAME", "app"))}
for _index, _name in enumerate(DB_REPLICA_NAMES):
    _alias = "replica" if _index == 0 else f"replica{_index + 1}"
    DATABASES[_alias] = _database(_name)
    # In tests every replica alias is the primary itself (Django's documented mirror pattern).
    DATABASES[_alias]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["core.db_router.PrimaryReplicaRouter"]
# The health checks (core.db: each process's primary and replica checks, which route reads and
# fail writes fast, and the preloading master's probe) connect to each database's name plus
# this: PgBouncer's pool of its own for them (pgbouncer/entrypoint.sh reads the same variable),
# so a check never queues behind requests that hold the app's pool (lock waits) and a busy pool
# is not taken for a dead server.
# Empty: the checks use the app's databases (a Postgres reached without PgBouncer, the tests').
DATABASE_CHECK_SUFFIX = env_str("DB_CHECK_SUFFIX", "_check")
# The same rules as PgBouncer's entrypoint, so neither starts with a value the other refuses: a
# check name that is one of the app's databases would replace that database in PgBouncer (the
# replica's reads sent to the primary), and PgBouncer takes names of at most 63 characters.
_APP_DATABASES = {str(database["NAME"]) for database in DATABASES.values()}
if not re.fullmatch(r"[0-9A-Za-z_]*", DATABASE_CHECK_SUFFIX):
    raise ImproperlyConfigured(
        f"DB_CHECK_SUFFIX may hold only letters, digits and _, got {DATABASE_CHECK_SUFFIX!r}"
    )
for _name in sorted(_APP_DATABASES) if DATABASE_CHECK_SUFFIX else []:
    _check = f"{_name}{DATABASE_CHECK_SUFFIX}"
    if _check in _APP_DATABASES:
        raise ImproperlyConfigured(
            f"DB_CHECK_SUFFIX {DATABASE_CHECK_SUFFIX!r} makes {_check}, one of the app's databases"
        )
    if len(_check) > 63:
        raise ImproperlyConfigured(
            f"DB_CHECK_SUFFIX makes {_check}, longer than PgBouncer's 63 characters"
        )
# After a write, that customer's reads use the primary this long. Streaming replication lags by
# milliseconds when healthy; 5s also covers a replica catching up after a burst.
READ_YOUR_WRITES_SECONDS = env_int("READ_YOUR_WRITES_SECONDS", 5)
# After a failed replica read, skip that replica this long before trying it again.
REPLICA_RETRY_AFTER_SECONDS = env_int("REPLICA_RETRY_AFTER_SECONDS", 10)
# A replica serves reads only while each process's check (every REPLICA_CHECK_SECONDS) finds it
# streaming from this primary and at most REPLICA_MAX_LAG_SECONDS behind it. Seconds, not bytes,
# because the bound then composes with read-your-writes: a replica still missing a write made
# READ_YOUR_WRITES_SECONDS ago lags at least that much, so it is out of reads by the time the
# customer's reads leave the primary, and their order never vanishes (core/db.py).
# A check's result routes reads for 2 x REPLICA_CHECK_SECONDS and rests on the primary's state
# read at most that long before it: hence the 4 below.
REPLICA_MAX_LAG_SECONDS = env_float("REPLICA_MAX_LAG_SECONDS", 2.0)
REPLICA_CHECK_SECONDS = env_float("REPLICA_CHECK_SECONDS", 0.5)
if REPLICA_MAX_LAG_SECONDS + 4 * REPLICA_CHECK_SECONDS >= READ_YOUR_WRITES_SECONDS:
    raise ImproperlyConfigured(
        "REPLICA_MAX_LAG_SECONDS + 4 * REPLICA_CHECK_SECONDS must be under "
        "READ_YOUR_WRITES_SECONDS, or a customer's order could vanish from a lagging replica"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The project's own user model, in accounts' first migration: fields can be added to it later.
AUTH_USER_MODEL = "accounts.User"

# --- What a login may cost (accounts/throttle.py) -------------------------------------------------
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
# Per account: free failures, then a lock doubling from LOGIN_BACKOFF_SECONDS to the maximum;
# failures are forgotten after the window or at the next success.
LOGIN_FREE_FAILURES = env_int("LOGIN_FREE_FAILURES", 5)
LOGIN_BACKOFF_SECONDS = env_int("LOGIN_BACKOFF_SECONDS", 2)
LOGIN_BACKOFF_MAX_SECONDS = env_int("LOGIN_BACKOFF_MAX_SECONDS", 900)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 3600)
# Per process: the share of its time password hashing may take, and how long a login waits for
# its turn before it is turned away (503). With one worker per core, 0.2 leaves readers 80%.
LOGIN_HASH_SHARE = env_float("LOGIN_HASH_SHARE", 0.2)
LOGIN_HASH_WAIT_SECONDS = env_float("LOGIN_HASH_WAIT_SECONDS", 5.0)
# An API token works this long after its login (it also ends with a password change or revoke).
API_TOKEN_LIFETIME_SECONDS = env_int("API_TOKEN_LIFETIME_SECONDS", 30 * 24 * 3600)
if not 0 < LOGIN_HASH_SHARE <= 1:
    raise ImproperlyConfigured("LOGIN_HASH_SHARE must be above 0 and at most 1.")

# --- Redis: two instances, because clients choose the page cache's keys (page x page size) ------
# The broker instance (REDIS_*: noeviction, append-only file) holds what must not vanish: Celery's
# queues (db 0) and results (db 1), and the "state" cache (db 3). The cache instance
# (REDIS_CACHE_*: allkeys-lru, no persistence) holds copies the database can rebuild (db 2): a
# full cache evicts its oldest pages instead of refusing the broker's publishes.
REDIS_HOST = env_str("REDIS_HOST", "redis")
REDIS_PORT = env_int("REDIS_PORT", 6379)
REDIS_PASSWORD = env_secret(
    "REDIS_PASSWORD", production=PRODUCTION, dev_default=f"{DEV_PREFIX}redis"
)
REDIS_CACHE_HOST = env_str("REDIS_CACHE_HOST", "redis-cache")
REDIS_CACHE_PORT = env_int("REDIS_CACHE_PORT", 6379)
REDIS_CACHE_PASSWORD = env_secret(
    "REDIS_CACHE_PASSWORD", production=PRODUCTION, dev_default=f"{DEV_PREFIX}redis-cache"
)
# Databases: the cache instance's one, and the broker instance's db for the "state" cache.
REDIS_CACHE_DB = 2
REDIS_STATE_DB = 3


def redis_url(db: int) -> str:
    """The broker instance."""
    return f"redis://:{REDIS_PASSWORD}@{REDIS_HOST}:{REDIS_PORT}/{db}"


def redis_cache_url() -> str:
    return f"redis://:{REDIS_CACHE_PASSWORD}@{REDIS_CACHE_HOST}:{REDIS_CACHE_PORT}/{REDIS_CACHE_DB}"


# Connections each process's Django caches hold at most to each Redis instance. A request holds
# one only for the length of a command, so a web worker's concurrent requests share a few; past
# the cap a caller waits (up to the socket timeout) for a free one instead of opening more. The
# event loop's reads add one pipelined connection per worker (core/resp.py). The fleet's sum,
# processes x instances x (cap + 1), stays far below Redis' maxclients (10000).
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 32)
_REDIS_OPTIONS = {
    # A slow or absent Redis must cost a request at most this much, never a hang.
    "SOCKET_CONNECT_TIMEOUT": 1,
    "SOCKET_TIMEOUT": 1,
    "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
    "CONNECTION_POOL_KWARGS": {"max_connections": REDIS_MAX_CONNECTIONS, "timeout": 1},
    # One client per process instead of one per request (core/cache.py says why).
    "CONNECTION_FACTORY": "core.cache.SharedClientConnectionFactory",
}
CACHES = {
    # Cache instance. Page and query cache and the product page's stock copy (the shop's stock):
    # copies the database rebuilds, so eviction costs a miss. An outage degrades to uncached
    # reads (misses), never to errors.
    "default": {
        # django-redis, each call timed for /metrics (core/cache.py).
        "BACKEND": "core.cache.InstrumentedRedisCache",
        "LOCATION": redis_cache_url(),
        "TIMEOUT": env_int("CACHE_TTL", 60),
        "OPTIONS": {**_REDIS_OPTIONS, "IGNORE_EXCEPTIONS": True},
    },
    # Broker instance (noeviction). State whose loss must not pass silently, so never evicted
    # by a flood of page keys: read-your-writes marks (evicted, a customer would read a lagging
    # replica) and the login throttle (accounts/throttle.py: evicted, an attacker who fills the
    # cache would lift their own lockout). Also the replica-down marks (core/db.py), which every
    # replica read consults: apart from the pages, a cache instance that hangs costs no read
    # more than its own lookup. Every key has a TTL and their number is bounded by
    # writes and Nginx's login rate, not by what readers ask for. Errors are raised.
    "state": {
        "BACKEND": "core.cache.InstrumentedRedisCache",
        "LOCATION": redis_url(REDIS_STATE_DB),
        "KEY_PREFIX": "state",
        "OPTIONS": _REDIS_OPTIONS,
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
# Cached GET answers served in front of Django on a hit (runtime/edge.py): each domain declares
# its routes; false sends every request through Django.
EDGE_CACHE = env_bool("EDGE_CACHE", True)
# demo-shop: begin (bin/remove-demo deletes the demo shop's settings, from here to the end mark)
# The product page's live stock copy (shop/stock.py) lives this long (seconds): a write Redis
# loses is retried until it lands (core/retry.py), never past this, the longest a count can stay
# stale.
STOCK_CACHE_TTL = env_int("STOCK_CACHE_TTL", 60)
# The event loop's reads of the cache instance (shop/redis.py: the product page's stock, a cached
# product page) wait at most this long (seconds) for a reply, connecting included: past it their
# connection is dropped and every read on it is a miss. Below the cache's own timeout, since on a
# miss the database answers anyway.
SHOP_REDIS_TIMEOUT = 0.5

# --- Upstream HTTP services of the product page ----------------------------------------------
PRICE_SERVICE_URL = env_str("PRICE_SERVICE_URL", "http://price:8080")
RECOMMENDATIONS_SERVICE_URL = env_str("RECOMMENDATIONS_SERVICE_URL", "http://recommendations:8080")
# Each call's own budget (seconds); past it the page falls back (catalogue price, no picks).
PRICE_TIMEOUT = env_float("PRICE_TIMEOUT", 0.5)
RECOMMENDATIONS_TIMEOUT = env_float("RECOMMENDATIONS_TIMEOUT", 0.5)
UPSTREAM_POOL_SIZE = env_int("UPSTREAM_POOL_SIZE", 400)
# The most of an upstream answer read (bytes); a longer one counts as failed (the fallback).
UPSTREAM_MAX_BODY_BYTES = env_int("UPSTREAM_MAX_BODY_BYTES", 65536)
# After this many failed calls in a row a service's calls are skipped (the fallback answers at
# once) for this many seconds, then one call probes it (shop/upstream.py, Breaker).
UPSTREAM_BREAKER_FAILURES = env_int("UPSTREAM_BREAKER_FAILURES", 5)
UPSTREAM_BREAKER_SECONDS = env_float("UPSTREAM_BREAKER_SECONDS", 10.0)
# demo-shop: end

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = redis_url(0)
CELERY_RESULT_BACKEND = redis_url(1)
CELERY_RESULT_EXPIRES = 3600
# A request that enqueues (POST /api/tasks) subscribes to its result first: with Redis down,
# Celery's default retries that for about 20 s before failing. Once, with the same socket
# timeouts as the broker, and the view answers 503.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"max_retries": 0}}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_REDIS_SOCKET_TIMEOUT = 2
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CONCURRENCY = env_int("CELERY_CONCURRENCY", 2)
# Heartbeat file the worker's liveness check reads: no round trip through the broker.
CELERY_HEARTBEAT_FILE = env_str("CELERY_HEARTBEAT_FILE", "/tmp/celery-heartbeat")  # noqa: S108
CELERY_HEARTBEAT_INTERVAL = env_float("CELERY_HEARTBEAT_INTERVAL", 5.0)
CELERY_BEAT_SCHEDULER = "config.celery.HeartbeatScheduler"
# Beat wakes at least this often, so its heartbeat stays fresher than the check's limit.
CELERY_BEAT_MAX_LOOP_INTERVAL = CELERY_HEARTBEAT_INTERVAL
# Work that is never lost (reports and email, docs in reports/ and notifications/): tasks that
# are safe to run twice set acks_late + reject_on_worker_lost themselves, so a message is acked
# only once its task finished and goes back to the queue when the worker dies mid-task. Redis
# hands an unacked message to another worker after the visibility timeout: longer than any
# task's hard time limit (or a running task would be delivered twice) and than any retry
# countdown (an ETA message waits unacked in a worker).
# demo-shop: begin
REPORT_SOFT_TIME_LIMIT, REPORT_TIME_LIMIT = 300, 330  # k8s/base/workers/reports: grace 360s
# demo-shop: end
EMAIL_SOFT_TIME_LIMIT, EMAIL_TIME_LIMIT = 30, 60  # k8s/base/workers/email: grace 90s
CELERY_TASK_SOFT_TIME_LIMIT, CELERY_TASK_TIME_LIMIT = 20, 30  # queue "default": grace 60s
CELERY_VISIBILITY_TIMEOUT = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # A publish (a request's on-commit enqueue) fails at once while Redis is down, instead of
    # retrying the connection for broker_connection_timeout (seconds of a request); the caller
    # logs it and the outbox or report sweeper enqueues later. Workers reconnect on their own
    # schedule (broker_connection_retry), which these do not touch.
    "max_retries": 0,
    "socket_connect_timeout": 2,
}
# One message at a time per child: a long report never holds a second one hostage.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# SIGTERM (docker stop, the kubelet) is a warm shutdown: no new tasks, running ones finish within
# their hard time limit, under each worker's grace period. The soft shutdown timeout bounds the
# cold path (SIGQUIT, a second Ctrl+C): tasks get this long, then are cancelled and, acks_late,
# go back to the queue.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
# A broker blip must not cancel a report that is half done; if its message is redelivered
# anyway, the report's own state guard makes the second run a no-op.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Pool children are replaced after this many tasks, or after a task that left them above this
# resident size (MB; Celery counts KiB): a leak or one huge report never accumulates.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_MAX_TASKS_PER_CHILD", 1000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_MAX_MEMORY_PER_CHILD_MB", 200) * 1024
# Celery's Django fixup closes every database connection before and after each task unless this
# is set (then every this many tasks: in effect never). A worker's connections live by
# DB_CONN_MAX_AGE, checked around each task (close_stale_connections, config/celery.py), as
# web's do: a new one per task was a SCRAM login at PgBouncer and at the worker per email.
CELERY_DB_REUSE_MAX = 1_000_000
# Each worker's own exporter of its processes' memory (runtime/celery_metrics.py); 0: off.
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 9808)
# Each queue has its own worker service (compose) or Deployment (k8s): a flood of reports never
# delays an email. Tasks without a route land on "default".
CELERY_TASK_ROUTES = {
    # demo-shop: begin
    "reports.generate": {"queue": "reports"},
    "reports.sweep": {"queue": "default"},
    # The reports worker is the one that mounts the media volume (compose, k8s).
    "reports.expire": {"queue": "reports"},
    # demo-shop: end
    "notifications.send_email": {"queue": "email"},
    "notifications.sweep_outbox": {"queue": "email"},
}
# Seconds between the sweeps that pick up what a dead worker or broker left behind.
OUTBOX_SWEEP_SECONDS = env_float("OUTBOX_SWEEP_SECONDS", 30.0)
REPORT_SWEEP_SECONDS = env_float("REPORT_SWEEP_SECONDS", 60.0)  # demo-shop
# Beat is the one process that reads this (exactly one beat: compose and k8s/base/beat.yaml).
# A sweep that waited past its own interval is dropped: the next one does the same work.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # demo-shop: begin
    "reports-sweep": {
        "task": "reports.sweep",
        "schedule": REPORT_SWEEP_SECONDS,
        "options": {"expires": REPORT_SWEEP_SECONDS},
    },
    # Retention counts in days: an hourly pass deletes a file at most an hour past its age.
    "reports-expire": {
        "task": "reports.expire",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # demo-shop: end
    "outbox-sweep": {
        "task": "notifications.sweep_outbox",
        "schedule": OUTBOX_SWEEP_SECONDS,
        "options": {"expires": OUTBOX_SWEEP_SECONDS},
    },
}

# --- Files on the media volume, downloaded through Nginx (reports/ writes its CSVs there) --------
# Written by the reports worker; Nginx serves them from the same volume, read-only, only when
# Django answers a download with X-Accel-Redirect to this internal prefix (nginx/nginx.conf).
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", "/srv/media"))
PROTECTED_MEDIA_PREFIX = "/protected-media/"
# Links in emails point here (scheme and host the customer uses).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://localhost:8080").rstrip("/")
# demo-shop: begin
REPORT_MAX_DAYS = env_int("REPORT_MAX_DAYS", 366)
# Orders read per query; memory stays flat whatever the range holds.
REPORT_CHUNK_SIZE = env_int("REPORT_CHUNK_SIZE", 2000)
# A pause between chunks spares the replica under load; 0 in production unless it needs it.
REPORT_CHUNK_PAUSE_SECONDS = env_float("REPORT_CHUNK_PAUSE_SECONDS", 0.0)
# A running report whose heartbeat is older than this lost its worker: the sweeper re-queues it.
REPORT_STALE_SECONDS = env_int("REPORT_STALE_SECONDS", 60)
# Runs of one report before it is failed for good (a worker dying on it each time).
REPORT_MAX_ATTEMPTS = env_int("REPORT_MAX_ATTEMPTS", 3)
# Reports one owner may have queued or running at once: each holds a reports worker for up to
# its time limit, so one account cannot fill the queue for everyone. Beyond it: a 409.
REPORT_MAX_ACTIVE_PER_OWNER = env_int("REPORT_MAX_ACTIVE_PER_OWNER", 3)
# A finished report's CSV is deleted from the media volume this many days after it finished
# (the row stays; its download answers 410). 0 keeps every file.
REPORT_RETENTION_DAYS = env_int("REPORT_RETENTION_DAYS", 30)
# demo-shop: end

# --- Email: sent only by the outbox relay (notifications/), over SMTP ---------------------------
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "mailcatcher")
EMAIL_PORT = env_int("EMAIL_PORT", 1025)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
# A secret when the relay wants a login (EMAIL_HOST_USER set): production refuses a placeholder.
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
if PRODUCTION and EMAIL_HOST_USER and EMAIL_HOST_PASSWORD.startswith(DEV_PREFIX):
    raise ImproperlyConfigured("EMAIL_HOST_PASSWORD still has its development value")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds for each SMTP connect and command: a dead relay costs a task this, never a hang.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
_DEFAULT_FROM = "djstack shop <shop@localhost>"  # demo-shop
# demo-shop: else _DEFAULT_FROM = "djstack <noreply@localhost>"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", _DEFAULT_FROM)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Failed sends retry after base x 2^(attempt-1) seconds, capped; the last attempt marks it failed.
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8)
OUTBOX_RETRY_BACKOFF_SECONDS = env_float("OUTBOX_RETRY_BACKOFF_SECONDS", 5.0)
OUTBOX_RETRY_BACKOFF_MAX_SECONDS = env_float("OUTBOX_RETRY_BACKOFF_MAX_SECONDS", 600.0)
# Nothing may outlive the broker's visibility timeout while it waits, unacked, in a worker:
# each domain lists its own waits here.
_UNACKED_WAITS = [OUTBOX_RETRY_BACKOFF_MAX_SECONDS]
_UNACKED_WAITS += [REPORT_TIME_LIMIT, REPORT_STALE_SECONDS]  # demo-shop
if max(_UNACKED_WAITS) >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "task time limits, retry backoff and stale-run limits must stay under the broker's "
        f"visibility timeout ({CELERY_VISIBILITY_TIMEOUT}s)"
    )

# --- HTTP, proxies, security ------------------------------------------------------------------
# Nginx terminates the client connection and says which scheme it used.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False
TLS_ENABLED = env_bool("TLS_ENABLED", PRODUCTION)
# Nginx sets X-Forwarded-Proto, so this only redirects a request that really came over HTTP.
SECURE_SSL_REDIRECT = TLS_ENABLED
SESSION_COOKIE_SECURE = TLS_ENABLED
CSRF_COOKIE_SECURE = TLS_ENABLED
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if TLS_ENABLED else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = TLS_ENABLED
# Preloading is a one-way commitment of the whole domain: its owner opts in, so the check that
# nags for it is silenced rather than the commitment made for every fork of this template.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Matches Nginx's client_max_body_size; Django's own guard for anything that bypasses Nginx.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Readiness checks each dependency with this budget (seconds); probes time out above it.
READYZ_TIMEOUT = env_float("READYZ_TIMEOUT", 2.0)
# A request slower than this is logged at warning, or at critical past the second (milliseconds).
SLOW_REQUEST_WARNING_MS = env_int("SLOW_REQUEST_WARNING_MS", 1000)
SLOW_REQUEST_CRITICAL_MS = env_int("SLOW_REQUEST_CRITICAL_MS", 5000)

# --- Static files: collected at image build, served by Nginx -----------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names let Nginx send a year-long, immutable Cache-Control.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Logging: one JSON object per line on stdout ----------------------------------------------
# Web and Celery alike (config/celery.py applies this too); Gunicorn's own log uses the same
# formatter (runtime/gunicorn_logging.py). Each line carries the request ID when one is bound.
LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # DisallowedHost is answered with a 400; one line at warning is enough.
        "django.security.DisallowedHost": {"level": "WARNING"},
        # A client's malformed tracestate is dropped (W3C) with a warning per request quoting
        # it: a flood of lines any client can write, up to a header's size each.
        "opentelemetry.trace.span": {"level": "ERROR"},
    },
}

"""The private internals of Django, asgiref, Uvicorn, uvicorn-worker and Gunicorn that the pooled
runtime (runtime/asgi.py, runtime/inline_middleware.py, runtime/workers.py) relies on still have
the shape it expects.

pyproject.toml bounds those libraries to the minor versions this was checked against; an
upgrade past them must pass here first. A failure names the library, the symbol and what to do:
serve with the stock runtime (SERVER_RUNTIME=stock: Django's ASGIHandler and
uvicorn_worker.UvicornWorker as released) until runtime/ is adapted to the change.
"""

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest


def require(ok: bool, library: str, symbol: str, expected: str) -> None:
    if not ok:
        pytest.fail(
            f"{library} changed {symbol}: the pooled runtime expects {expected}. Set "
            "SERVER_RUNTIME=stock (the stock Django handler and Uvicorn worker) until app/runtime/ "
            "is adapted, or pin the previous version in pyproject.toml.",
            pytrace=False,
        )


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_django_handler_internals() -> None:
    from django.core.handlers import asgi, base

    # runtime/asgi.py swaps base.import_string, the module global load_middleware calls, so
    # that it builds the chain from the inline middleware classes.
    require(
        callable(getattr(base, "import_string", None)),
        "Django",
        "django.core.handlers.base.import_string",
        "a module global of django.core.handlers.base",
    )
    source = inspect.getsource(base.BaseHandler.load_middleware)
    require(
        "import_string(" in source and "import import_string" not in source,
        "Django",
        "BaseHandler.load_middleware",
        "it to look up each settings.MIDDLEWARE path through the module's import_string",
    )
    require(
        parameters(base.BaseHandler.load_middleware) == ["self", "is_async"],
        "Django",
        "BaseHandler.load_middleware's signature",
        "(self, is_async=False)",
    )
    require(
        parameters(asgi.ASGIHandler.handle) == ["self", "scope", "receive", "send"]
        and inspect.iscoroutinefunction(asgi.ASGIHandler.handle),
        "Django",
        "ASGIHandler.handle",
        "a coroutine handle(self, scope, receive, send)",
    )


# The source of the Django ASGIHandler.handle that PooledExecutorASGIHandler.handle reproduces,
# less its two thread hops: a release that changes it (a fix included) must be read and carried
# over before this hash is updated.
HANDLE_SHA256 = "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323"


def test_django_asgi_handle_is_the_one_the_pooled_handler_reproduces() -> None:
    from django.core.handlers.asgi import ASGIHandler
    from django.dispatch import Signal

    source = inspect.getsource(ASGIHandler.handle)
    require(
        hashlib.sha256(source.encode()).hexdigest() == HANDLE_SHA256,
        "Django",
        "ASGIHandler.handle",
        "the handle runtime/asgi.py reproduces (read the change, carry it over, update "
        "HANDLE_SHA256)",
    )
    require(
        parameters(Signal._live_receivers) == ["self", "sender"],
        "Django",
        "Signal._live_receivers",
        "_live_receivers(self, sender) -> (sync receivers, async receivers)",
    )


def test_django_middleware_internals() -> None:
    from django.contrib.messages.middleware import MessageMiddleware
    from django.contrib.messages.storage.base import BaseStorage
    from django.contrib.sessions.backends.base import SessionBase
    from django.middleware.csrf import CsrfViewMiddleware
    from django.utils.deprecation import MiddlewareMixin

    # runtime/inline_middleware.py replaces MiddlewareMixin.__acall__ and decides from the
    # session's and the messages' flags whether a response needs the request's thread.
    require(
        "self.__acall__(" in inspect.getsource(MiddlewareMixin.__call__),
        "Django",
        "MiddlewareMixin.__call__",
        "it to hand an async request to self.__acall__",
    )
    require(
        parameters(CsrfViewMiddleware.process_view)
        == ["self", "request", "callback", "callback_args", "callback_kwargs"],
        "Django",
        "CsrfViewMiddleware.process_view's signature",
        "(self, request, callback, callback_args, callback_kwargs)",
    )
    session = inspect.getsource(SessionBase)
    require(
        "self.accessed" in session and "self.modified" in session,
        "Django",
        "SessionBase.accessed / SessionBase.modified",
        "the flags a session sets when read or written",
    )
    storage = inspect.getsource(BaseStorage)
    require(
        "self.used" in storage and "self.added_new" in storage,
        "Django",
        "BaseStorage.used / BaseStorage.added_new",
        "the flags the message storage sets when read or added to",
    )
    # Its MessageMiddleware builds the storage Django's process_request would, on first use.
    require(
        "request._messages = default_storage(request)"
        in inspect.getsource(MessageMiddleware.process_request),
        "Django",
        "MessageMiddleware.process_request",
        "request._messages = default_storage(request), its whole work",
    )


def test_asgiref_thread_sensitive_context_takes_an_executor() -> None:
    from asgiref.sync import ThreadSensitiveContext

    signature = inspect.signature(ThreadSensitiveContext)
    require(
        "executor" in signature.parameters,
        "asgiref",
        "ThreadSensitiveContext(executor=...)",
        "the executor that runs a request's thread-sensitive sync calls to be passed in",
    )


def test_uvicorn_server_internals() -> None:
    from uvicorn.config import Config
    from uvicorn.server import Server, ServerState

    server = Server(Config(app=lambda scope, receive, send: None))
    # runtime/workers.py's DrainingServer: keeps a SIGTERM in _captured_signals while it drains,
    # runs its watchdog and deadline in on_tick, closes self.servers, counts
    # server_state.connections.
    require(
        isinstance(getattr(server, "_captured_signals", None), list),
        "Uvicorn",
        "Server._captured_signals",
        "a list of the signals received, re-raised when the server has stopped",
    )
    require(
        parameters(Server.on_tick) == ["self", "counter"]
        and inspect.iscoroutinefunction(Server.on_tick),
        "Uvicorn",
        "Server.on_tick",
        "a coroutine on_tick(self, counter) -> bool that main_loop awaits at every tick",
    )
    require(
        "self.on_tick(" in inspect.getsource(Server.main_loop),
        "Uvicorn",
        "Server.main_loop",
        "it to call self.on_tick at every tick",
    )
    require(
        parameters(Server.handle_exit) == ["self", "sig", "frame"],
        "Uvicorn",
        "Server.handle_exit",
        "handle_exit(self, sig, frame), the signal handler",
    )
    require(
        parameters(Server.startup) == ["self", "sockets"]
        and parameters(Server.serve) == ["self", "sockets"],
        "Uvicorn",
        "Server.startup / Server.serve",
        "startup(self, sockets=None) and serve(self, sockets=None)",
    )
    require(
        "self.servers" in inspect.getsource(Server.startup),
        "Uvicorn",
        "Server.servers",
        "the listening servers startup() opens, as self.servers",
    )
    require(
        all(hasattr(server, name) for name in ("started", "should_exit", "server_state"))
        and hasattr(ServerState(), "connections"),
        "Uvicorn",
        "Server.started / should_exit / server_state.connections",
        "those attributes",
    )


def test_uvicorn_worker_internals() -> None:
    from gunicorn.arbiter import Arbiter
    from uvicorn_worker import UvicornWorker

    # runtime/workers.py's UvicornWorker overrides _serve and calls _install_sigquit_handler;
    # gunicorn.conf.py's post_fork moves worker.config.limit_max_requests to the memory guard.
    require(
        parameters(UvicornWorker._install_sigquit_handler) == ["self"],
        "uvicorn-worker",
        "UvicornWorker._install_sigquit_handler",
        "a method _install_sigquit_handler(self)",
    )
    serve = inspect.getsource(UvicornWorker._serve)
    require(
        inspect.iscoroutinefunction(UvicornWorker._serve)
        and "Server(config=self.config)" in serve
        and "sockets=self.sockets" in serve,
        "uvicorn-worker",
        "UvicornWorker._serve",
        "a coroutine that serves Server(config=self.config) on self.sockets",
    )
    init = inspect.getsource(UvicornWorker.__init__)
    require(
        "limit_max_requests" in init and "timeout_notify" in init and "self.config =" in init,
        "uvicorn-worker",
        "UvicornWorker.__init__",
        "a Uvicorn Config in self.config with limit_max_requests and timeout_notify",
    )
    require(
        "self.CONFIG_KWARGS" in init,
        "uvicorn-worker",
        "UvicornWorker.__init__",
        "a Uvicorn Config built with the class's CONFIG_KWARGS (runtime/workers.py sets its http)",
    )
    require(
        isinstance(getattr(Arbiter, "WORKER_BOOT_ERROR", None), int),
        "Gunicorn",
        "Arbiter.WORKER_BOOT_ERROR",
        "the exit code of a worker that failed to boot",
    )


def test_uvicorn_httptools_protocol_internals() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # runtime/http_protocol.py hands connection_made a transport of its own: every write of the
    # connection and of its requests' cycles must go through the one the protocol keeps.
    made = inspect.getsource(HttpToolsProtocol.connection_made)
    headers = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    require(
        "self.transport = transport" in made and "transport=self.transport" in headers,
        "Uvicorn",
        "HttpToolsProtocol.connection_made, on_headers_complete",
        "the transport kept as self.transport, and each RequestResponseCycle given that one",
    )


def test_a_changed_internal_fails_with_what_to_do() -> None:
    with pytest.raises(pytest.fail.Exception) as excinfo:
        require(False, "Uvicorn", "Server.on_tick", "a coroutine")
    message = str(excinfo.value)
    assert "Uvicorn changed Server.on_tick" in message
    assert "SERVER_RUNTIME=stock" in message

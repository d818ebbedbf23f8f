"""Django's own middleware for the ASGI handler, minus a thread hop per method.

Under ASGI, Django runs each sync `process_request`/`process_response` of its MiddlewareMixin
classes through `sync_to_async`: a job handed to the request's thread and a wake-up of the event
loop when it is done. With the seven in settings.MIDDLEWARE that is 13 hops per request (CSRF's
process_view included), each also waiting for the GIL while the loop is busy: docs/BENCHMARKS.md,
scenario 1, compares the two ("pooled, thread hops" against the inline handler).

These subclasses run those methods on the event loop, which is safe where a method does no I/O.
Where it may (saving a session, storing messages, CSRF tokens kept in the session, reading a
POST body for the CSRF check), the `*_needs_thread` hooks send that call to the request's thread
exactly as Django does. Settings keep Django's class paths (`check --deploy` looks for those
names); runtime.asgi's handler swaps in these classes when it builds the async middleware chain.
WSGI workers never use them.
"""

import functools
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.functional import SimpleLazyObject, empty

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


class InlineMixin:
    """The async half of django.utils.deprecation.MiddlewareMixin, calling the sync methods
    directly unless a hook says the call may block."""

    get_response: Any
    process_request: Any
    process_response: Any

    def request_needs_thread(self, request: HttpRequest) -> bool:
        return False

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        if hasattr(self, "process_request"):
            if self.request_needs_thread(request):
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
            else:
                response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response
                )
            else:
                response = self.process_response(request, response)
        return cast(HttpResponseBase, response)


class SecurityMiddleware(InlineMixin, security.SecurityMiddleware):
    """Headers and the HTTPS redirect: no I/O."""


class CommonMiddleware(InlineMixin, common.CommonMiddleware):
    """Host validation, APPEND_SLASH (URL resolving) and Content-Length: no I/O."""


class XFrameOptionsMiddleware(InlineMixin, clickjacking.XFrameOptionsMiddleware):
    """One header: no I/O."""


class AuthenticationMiddleware(InlineMixin, auth.AuthenticationMiddleware):
    """Sets a lazy request.user (and request.auser): the user is loaded only when used."""


class SessionMiddleware(InlineMixin, sessions.SessionMiddleware):
    """process_request makes a lazy session. process_response reaches the session store only
    when the session was read (then it may be saved, or found empty and its cookie deleted) or every
    request saves it."""

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        return (
            session is None
            or session.accessed
            or session.modified
            or settings.SESSION_SAVE_EVERY_REQUEST
        )


class MessageMiddleware(InlineMixin, messages.MessageMiddleware):
    """The request's message storage is built when first used: an API request never uses one, so
    it never pays for building a cookie storage, a session storage and a cookie signer.
    process_response stores only messages read or added during the request (cookie or session)."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(  # type: ignore[attr-defined]
            functools.partial(default_storage, request)
        )

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if _unused(request):
            return response  # nothing was read or added: nothing to store
        return cast(HttpResponse, super().process_response(request, response))

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        if _unused(request):
            return False
        storage: Any = request._messages  # type: ignore[attr-defined]
        return bool(storage.used or storage.added_new)


def _unused(request: HttpRequest) -> bool:
    """No message storage, or MessageMiddleware's lazy one never built (a view may set its own)."""
    storage: Any = getattr(request, "_messages", None)
    lazy = isinstance(storage, SimpleLazyObject)
    return storage is None or (lazy and storage._wrapped is empty)


class CsrfViewMiddleware(InlineMixin, csrf.CsrfViewMiddleware):
    """The token comes from a cookie (no I/O) unless CSRF_USE_SESSIONS; the check of an unsafe
    request reads its POST body, so that one runs on the request's thread."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            # Read by the handler after construction: a coroutine function is awaited as is,
            # where a sync one would be wrapped in sync_to_async.
            self.process_view = self._aprocess_view  # type: ignore[method-assign,assignment]

    def request_needs_thread(self, request: HttpRequest) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    async def _aprocess_view(
        self, request: HttpRequest, callback: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        view = super().process_view
        inline = not settings.CSRF_USE_SESSIONS and (
            request.method in SAFE_METHODS
            or getattr(callback, "csrf_exempt", False)
            or getattr(request, "csrf_processing_done", False)
        )
        if inline:
            return view(request, callback, args, kwargs)
        return await sync_to_async(view, thread_sensitive=True)(request, callback, args, kwargs)


# settings.MIDDLEWARE's names for Django's classes -> the inline subclasses.
BY_DJANGO_PATH: dict[str, type] = {
    f"{cls.__bases__[1].__module__}.{cls.__bases__[1].__name__}": cls
    for cls in (
        SecurityMiddleware,
        SessionMiddleware,
        CommonMiddleware,
        CsrfViewMiddleware,
        AuthenticationMiddleware,
        MessageMiddleware,
        XFrameOptionsMiddleware,
    )
}

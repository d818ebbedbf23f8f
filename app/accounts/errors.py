"""Login refusals the API answers with Retry-After (config/api.py), never as a wrong password."""

from core.errors import DomainError


class LoginThrottled(DomainError):
    status = 429
    code = "login_throttled"


class LoginBusy(DomainError):
    status = 503
    code = "login_busy"

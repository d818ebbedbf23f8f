"""Report errors: answered as 400 JSON naming the field (config/api.py), or recorded on the
report as the reason the customer reads when its task finds them."""

from core.errors import DomainError


class ReportInvalid(DomainError):
    status = 400
    code = "invalid_report"


class ReportForbidden(DomainError):
    # 403: a customer asking for what only staff may see (the whole shop's sales).
    status = 403
    code = "forbidden"


class ReportLimitReached(DomainError):
    # 409: the request is valid, but conflicts with the owner's reports still under way; it
    # succeeds once one of them finishes (not a rate: waiting alone does not help, so not 429).
    status = 409
    code = "too_many_active_reports"


class ReportExpired(DomainError):
    # 410: the report existed and was done, and its file was deleted for good (retention); asking
    # again will not bring it back, asking for a new report will.
    status = 410
    code = "expired"

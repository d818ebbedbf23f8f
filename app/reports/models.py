from django.conf import settings
from django.db import models


class Report(models.Model):
    """A sales report: asked for over the API, built by the reports worker. A customer's covers
    their own orders; staff may ask for the whole shop's.

    queued -> running -> done | failed. A run holds the report while its heartbeat is fresh
    (reports.services.claim); `attempts` numbers the runs, and only the run that holds the
    report may move it on, so it completes exactly once however often its task is delivered.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports"
    )
    # Parameters: orders placed from date_from to date_to (inclusive, UTC days).
    date_from = models.DateField()
    date_to = models.DateField()
    product = models.ForeignKey(
        "shop.Product", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Every customer's orders (staff only, checked when asked for); otherwise only the owner's.
    # False in the database too, so a row written without it never reads the whole shop.
    shop_wide = models.BooleanField(default=False, db_default=False)

    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # The CSV, relative to MEDIA_ROOT; set when done.
    file = models.CharField(max_length=255, blank=True)
    # Why it failed, in words for the customer.
    error = models.TextField(blank=True)
    order_count = models.PositiveIntegerField(null=True, blank=True)
    units = models.PositiveBigIntegerField(null=True, blank=True)
    # A sum of up to order_count orders, each up to Order.total's 18 digits: 28 digits hold any
    # such sum (and 28 is the precision of the Python decimal context that adds it up).
    revenue = models.DecimalField(max_digits=28, decimal_places=2, null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    # When its task was last handed to the broker; NULL: never (the broker was down).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched by the running task after every chunk; stale means its worker is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the retention sweep deleted its CSV (REPORT_RETENTION_DAYS after finished_at); the row
    # stays, and its download answers 410.
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="report_progress_lte_100"
            ),
        ]
        indexes = [
            # The sweeper's scan: only the few reports not yet finished.
            models.Index(
                fields=["state", "heartbeat_at"],
                condition=models.Q(state__in=["queued", "running"]),
                name="report_unfinished_idx",
            ),
            # The retention sweep's scan: only reports whose file is still on the volume.
            models.Index(
                fields=["finished_at"],
                condition=models.Q(state="done") & ~models.Q(file=""),
                name="report_file_kept_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Report {self.pk} ({self.state})"

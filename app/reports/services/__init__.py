"""Writes for reports, one module per job:

- request: asking for a report (parameters, the owner's cap), and enqueueing its task;
- claim: which run holds a report (the claim, the heartbeat, writes conditional on holding it);
- aggregation: the CSV from the orders, pure (no database);
- run: one run, claim, build (the atomic write: core.files), complete;
- sweep: the beat sweeps (stuck reports, expired files).

Exactly once, however often the task is delivered. The task is acks_late and
reject_on_worker_lost, so a worker that dies mid-report puts the message back; the sweeper also
re-queues reports whose worker went silent. Every run first claims the report, and each later
write of the run is conditional on still holding it (claim): a run that lost its claim changes
nothing and stops. The CSV is renamed into place under a name carrying the run number; only the
run that marks the report done has its file recorded, and the customer's email is written to
the outbox in that same transaction. One report, one file, one email, totals counted once.
"""

from reports.services.aggregation import Totals
from reports.services.claim import ClaimLost, RunResult
from reports.services.request import report_create, report_enqueue, report_parameters_check
from reports.services.run import report_complete, report_run
from reports.services.sweep import report_files_expire, report_sweep

__all__ = [
    "ClaimLost",
    "RunResult",
    "Totals",
    "report_complete",
    "report_create",
    "report_enqueue",
    "report_files_expire",
    "report_parameters_check",
    "report_run",
    "report_sweep",
]

"""Bounded background jobs: work that must not run on a request (OWASP API4), in memory only.

A `JobQueue` runs submitted work on its own worker threads (one by default), never on the event
loop or the request's thread. At most `workers` jobs run and at most `max_queued` wait; a submit
past that raises `QueueFull`, which the route answers with 429 and Retry-After. Nothing is
persisted: a restart forgets every job, queued, running or finished (a report a job finished is
still in the log and its files in the data directory). Finished jobs are kept, newest
`max_kept`, so a client can poll for the outcome.

A job's work is called with the job's id and returns a JSON-ready dict (its result) or raises:
an `AnnexError` becomes the job's error text; anything else is logged and reported as an
unexpected error, without its message (it may hold data).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from evidence.entry import rfc3339
from evidence.errors import AnnexError

State = Literal["queued", "running", "done", "failed"]
Work = Callable[[str], dict[str, Any]]  # given the job's id

WORKERS = 1
MAX_QUEUED = 4
MAX_KEPT = 1000
RETRY_AFTER_S = 30

log = logging.getLogger(__name__)


class QueueFull(AnnexError):
    """Every worker is busy and the queue is at its cap: try again later."""

    http_status = 429


@dataclass
class Job:
    """One unit of work and what became of it."""

    id: str
    kind: str
    params: dict[str, Any]
    work: Work = field(repr=False)
    state: State = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "status": self.state,
            "params": self.params,
            "created_at": rfc3339(self.created_at),
            "started_at": None if self.started_at is None else rfc3339(self.started_at),
            "finished_at": None if self.finished_at is None else rfc3339(self.finished_at),
        }
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        return data


class JobQueue:
    """A fixed number of daemon worker threads, started on the first submit, and a capped queue."""

    def __init__(
        self, *, workers: int = WORKERS, max_queued: int = MAX_QUEUED, max_kept: int = MAX_KEPT
    ) -> None:
        if workers < 1 or max_queued < 0:
            raise ValueError("a job queue needs at least one worker and a queue of zero or more")
        self.workers = workers
        self.max_queued = max_queued
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    def submit(self, kind: str, params: dict[str, Any], work: Work) -> Job:
        """Queues `work`, or raises QueueFull when `workers` run and `max_queued` wait."""
        with self._lock:
            waiting = sum(j.state == "queued" for j in self._jobs.values())
            running = sum(j.state == "running" for j in self._jobs.values())
            if running + waiting >= self.workers + self.max_queued:
                raise QueueFull(
                    f"{running} job(s) running and {waiting} queued, the most this server "
                    f"takes; try again in {RETRY_AFTER_S} s"
                )
            job = Job(secrets.token_hex(8), kind, params, work)
            self._jobs[job.id] = job
            self._forget_old()
            self._start()
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        """How many jobs this queue knows: queued, running and kept."""
        with self._lock:
            return len(self._jobs)

    def close(self) -> None:
        """Stops the workers after the job each is running; queued jobs never start."""
        for _ in self._threads:
            self._pending.put(None)

    def _start(self) -> None:
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._run, name="annex-job", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state in ("done", "failed")]
        for job_id in finished[: max(0, len(self._jobs) - self.max_kept)]:
            del self._jobs[job_id]

    def _run(self) -> None:
        while (job := self._pending.get()) is not None:
            self._set(job, "running", started_at=datetime.now(UTC))
            try:
                result = job.work(job.id)
            except AnnexError as exc:
                self._set(job, "failed", error=str(exc))
            except Exception:
                log.exception("job %s (%s) failed", job.id, job.kind)
                self._set(job, "failed", error="an unexpected error; see the server log")
            else:
                self._set(job, "done", result=result)

    def _set(self, job: Job, state: State, **changes: Any) -> None:
        with self._lock:
            job.state = state
            if state in ("done", "failed"):
                job.finished_at = datetime.now(UTC)
            for name, value in changes.items():
                setattr(job, name, value)

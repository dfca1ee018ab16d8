"""The seam between the job core and the side that talks to members (Discord, in
``bot.reporter``): what the core asks of it, and what it hands it.

The core records a job's course in the journal; the front end shows it. Per job, a
``JobStatus`` edits the member's status message and posts what the journal could not keep;
for the whole bot, a ``Frontend`` makes the ``JobStatus`` of a job taken back from the journal
and delivers the outbox's items. Both say how a delivery failed with ``bot.jobs.outbox``'s
``Retry`` and ``Undeliverable``, never with their own errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.i18n import Words
from bot.journal import JobRecord, OutboxItem, StatusMessage
from engine.jobs import JobProgress, Started


@dataclass(frozen=True)
class StatusContext:
    """What the core tells the front end about a job whose status it is to show."""

    job_id: str
    headline: Words | None
    """A first line for every status (what a follow-up job derives from), or None; written in
    the language of each status's route."""
    keep_message: Callable[[StatusMessage], None]
    """Call with the status message whenever it changes: the journal keeps it, so that the
    same message is edited after a restart."""


class JobStatus(Protocol):
    """What one job's member sees. Updates must not block; the end is the core's to record."""

    def queued(self, position: int) -> None:
        """The job waits; ``position`` 1 is next."""

    def progress(self, event: Started | JobProgress) -> None:
        """The job started, or made progress."""

    def cancel_requested(self, by_user_id: int) -> None:
        """Someone pressed Cancel; the job's end follows."""

    async def settle(self) -> None:
        """No more updates: drop those waiting and let one under way land, so that what the
        core shows next (``notice``) or the outbox delivers is the last word."""

    async def notice(self, text: Words, *, tell: bool) -> None:
        """Show ``text`` (written in its route's language) as the final state of the status
        message; if that message is gone and ``tell``, post it. Raises ``Retry`` or
        ``Undeliverable``."""

    async def post_result(self, record: JobRecord, image: bytes) -> None:
        """Post a result held in memory (the journal could not keep it), as the outbox would
        have. Raises ``Retry`` or ``Undeliverable`` (when its member has been told)."""


StatusFactory = Callable[[StatusContext], JobStatus]
"""Makes the status of a job a member has just asked for (the front end knows how to reach
them: the interaction they are waiting on)."""


class Frontend(Protocol):
    def status(self, record: JobRecord, context: StatusContext) -> JobStatus:
        """The status of a job taken back from the journal after a restart."""

    async def deliver(self, item: OutboxItem) -> int | None:
        """Deliver one outbox item; returns the posted message's id, if there is one. Raises
        ``Retry`` or ``Undeliverable``."""

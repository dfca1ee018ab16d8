"""The job core: every job's lifecycle as plain asyncio over the journal and the engine's
backend. Nothing here imports discord (a test proves it); ``bot.reporter`` and the cogs are the
Discord side.

* ``service``: ``JobService``, accept, follow-ups, resume, retention and shutdown;
* ``queue`` and ``runner``: the fair queue, and dispatch to the backend by its live capacity;
* ``tracker``: one job's course in the journal, its end included (a full disk too);
* ``outbox``: delivering what members are owed, with retries that survive restarts;
* ``followups``: the follow-up rules, one table entry per kind;
* ``settings``: command options to ``StylizeSettings``, and the bounds they share;
* ``frontend``: the Protocols the Discord side implements.
"""

"""The Discord bot: ``/stylize`` in a community server, on top of the engine's backend.

``client.StylizeBot`` owns the resources: it opens the journal and the backend in
``setup_hook``, builds the one job service over them (``jobs``, the Discord-free core: queue,
runner, outbox, follow-up rules, resume, retention, shutdown), then loads the cogs, which
borrow them:

* ``cogs.stylize`` and ``cogs.styles``: the commands, thin adapters to the service and to
  ``gallery``;
* ``buttons``: Cancel and the follow-ups, ``DynamicItem``s carrying the job id;
* ``reporter``, ``reply``, ``delivery``, ``throttle`` and ``uploads``: the job core's front end
  on Discord (status edits, results, routes and retries, Discord's limits);
* ``intake`` and ``permissions``: downloads and checks before a job is accepted;
* ``config``, ``journal`` and ``datadir``: settings, the durable job records, the data folder;
* ``messages`` (every text a user reads), ``errors`` (which text an error gets), ``i18n`` (the
  languages: catalogues in ``locales/``) and ``translator`` (the commands in every language).

This package imports no torch: only the engine's worker processes do.
"""

"""The Discord bot: ``/stylize`` in a community server, on top of the engine's worker pool.

Start-up and shutdown are in ``client``, the command and its Cancel button in
``cogs.stylize``. The cog hands plain values to the modules that do the work:

* ``config``: the settings (environment and ``.env``);
* ``intake``: downloading (size-capped) and checking the uploads;
* ``job_settings``: the command's options as the engine's ``StylizeSettings``;
* ``queue`` and ``runner``: the fair queue in front of the pool (no Discord in them);
* ``reporter``, ``status`` and ``throttle``: status edits, the result, Discord's limits;
* ``uploads``: keeping the result under the upload limit;
* ``messages`` and ``errors``: every text a user reads.

This package imports no torch: only the engine's worker processes do.
"""

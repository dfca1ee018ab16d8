"""The operator's port: ``/metrics``, ``/healthz`` and ``/readyz``, served on the bot's own
event loop when ``STYLIZE_METRICS_PORT`` is set (unset: nothing listens).

* ``/metrics``: Prometheus' text format (``bot.metrics``).
* ``/healthz``: 200 whenever the loop answers; a process stuck or gone does not.
* ``/readyz``: 200 when connected to Discord with engine capacity above 0; else 503 and the
  reason, in a few words, as the body.

Anyone who can reach the port can read the metrics (counts and times, no member data), so it
binds to 127.0.0.1 unless ``STYLIZE_METRICS_HOST`` says otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

Readiness = Callable[[], "str | None"]
"""None when the bot is ready; else why not, in a few words."""


class OpsServerError(Exception):
    """The port can't be listened on; ``str()`` is one line naming the setting."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free one), or ``OpsServerError``."""
    where = f"{host}:{port}"
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family)
    except socket.gaierror as error:
        raise OpsServerError(
            f"STYLIZE_METRICS_HOST: {host!r} is not an address of this machine ({error.strerror})"
        ) from None
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise OpsServerError(
            f"STYLIZE_METRICS_PORT: cannot listen on {where} ({why}); pick a free port, or "
            "stop what uses it"
        ) from None


class OpsServer:
    def __init__(self, exposition: Callable[[], bytes], readiness: Readiness) -> None:
        """``exposition``: the metrics in Prometheus' text format; ``readiness``: None when
        ready, else the reason."""
        self._exposition = exposition
        self._readiness = readiness
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.address: tuple[str, int] | None = None
        """The host and port it serves on, once started."""

    async def start(self, host: str, port: int) -> None:
        """Listen and serve; raises ``OpsServerError`` if the port can't be had."""
        sock = listen(host, port)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self.address = sock.getsockname()[:2]
        log.info("serving /metrics, /healthz and /readyz on http://%s",
                 _url_host(*self.address))  # fmt: skip

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self._readiness()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")


def _url_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

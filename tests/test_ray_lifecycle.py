"""The Ray backend's own Ray: joining a cluster within a time limit and with an honest error,
the private Ray it starts without an address (its own, and only for clients with its token),
and closing within the bot's budget, even with a hung job or during ``start``.

Every test here starts Ray itself (or fails to join one), so none may find it initialised.
Clients that must not share this process's Ray run as subprocesses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.errors import ClusterError
from engine.jobs import BackendError, Cancelled
from engine.runs import SHUTDOWN
from tests.backend_fixtures import LONG, WEIGHTS, children, first_progress, job, until_exited

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
from ray.util.placement_group import placement_group  # noqa: E402

from engine.ray_backend import (  # noqa: E402
    CLOSE_MARGIN,
    RayBackend,
    RaySession,
    cluster_error,
    token_auth,
)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "127.0.0.1:9"  # the discard port: nothing listens there
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"

JOIN = (
    "import asyncio, sys\n"
    "from engine.errors import ClusterError\n"
    "from engine.ray_backend import RayBackend, RaySession\n"
    "async def main():\n"
    "    address, timeout = sys.argv[2], float(sys.argv[3])\n"
    "    if sys.argv[1] == 'backend':\n"
    "        joining = RayBackend(address=address, connect_timeout=timeout, device='cpu',\n"
    "                             weights='random:0').start()\n"
    "    else:\n"
    "        joining = RaySession(address, connect_timeout=timeout).open()\n"
    "    try:\n"
    "        await joining\n"
    "    except ClusterError as error:\n"
    "        print('refused:', error, flush=True)\n"
    "    else:\n"
    "        print('joined', flush=True)\n"
    "asyncio.run(main())\n"
)


async def join(how: str, address: str, timeout: float, env: dict[str, str]) -> tuple[str, float]:
    """What a separate process (``RayBackend.start`` or ``RaySession.open``) says when it
    joins ``address``, and how long the whole process took to exit."""
    begun = time.monotonic()
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", JOIN, how, address, str(timeout),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(client.communicate(), 60)
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
    lines = out.decode().strip().splitlines()
    return (lines[-1] if lines else ""), time.monotonic() - begun


@pytest.fixture(autouse=True)
def no_ray_yet() -> Iterator[None]:
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized()


class LogEvent(logging.Handler):
    """An asyncio event set when ``engine.ray_backend`` logs a message starting with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.INFO)
        self.prefix = prefix
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen.set()


# ----- joining ------------------------------------------------------------------------------

REFUSED = RuntimeError(
    "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
    "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token "
    "is missing or incorrect."
)
MISMATCH = RuntimeError(
    "Version mismatch: The cluster was started with:\n    Ray: 2.52.0\n    Python: 3.10.12\n"
    "This process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n"
)
TIMED_OUT = RuntimeError("Failed to connect to GCS. ... TimedOut: Timed out while waiting")


def wrapped(cause: BaseException) -> ConnectionError:
    """As ``ray.init`` raises it: a ConnectionError (an OSError) from the real cause."""
    error = ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("address", "error", "waited", "said"),
    [
        ("10.0.0.1:6379", wrapped(REFUSED), None, ["auth token", "RAY_AUTH_TOKEN"]),
        ("auto", REFUSED, None, ["auth token", "RAY_AUTH_TOKEN_PATH"]),
        ("10.0.0.1:6379", wrapped(MISMATCH), None,
         ["version mismatch", "Ray 2.52.0 on Python 3.10.12", f"Ray {ray.__version__}"]),
        ("10.0.0.1:6379", wrapped(TIMED_OUT), None, ["unreachable or not running"]),
        ("10.0.0.1:6379", None, 30.0, ["within 30 s", "unreachable or not running"]),
        (None, ValueError("When connecting to an existing cluster, num_cpus must not be\nset"),
         None, ["Ray could not start on this machine: When connecting", "num_cpus must not be"]),
    ],
)  # fmt: skip
def test_a_failure_to_join_names_ray_the_address_and_the_cause(
    address: str | None, error: BaseException | None, waited: float | None, said: list[str]
) -> None:
    failure = cluster_error(address, error, waited=waited)
    message = str(failure)
    assert isinstance(failure, ClusterError) and not isinstance(failure, OSError)
    assert "\n" not in message and "Ray" in message
    assert address is None or address in message
    for words in said:
        assert words.lower() in message.lower(), message


async def test_an_unreachable_cluster_fails_within_the_time_limit() -> None:
    said, took = await join("backend", UNREACHABLE, 2.0, dict(os.environ))
    assert said.startswith(f"refused: Could not join the Ray cluster at {UNREACHABLE} within 2 s")
    assert "unreachable or not running" in said
    # Ray retries that address for minutes: the process must neither wait for it nor be kept
    # alive by the thread that still tries.
    assert took < 20, took


# ----- the private Ray ----------------------------------------------------------------------


async def test_the_private_ray_admits_only_clients_with_its_token() -> None:
    token_file = DEFAULT_TOKEN_FILE.exists()
    env_before = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    session = RaySession(None, options={"num_cpus": 1})
    await session.open()
    try:
        address = ray.get_runtime_context().gcs_address
        bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        clients = {
            # Falls back on Ray's default token file, which a shared token would be in.
            "no token": {**bare, "RAY_AUTH_MODE": "token"},
            "wrong token": {**bare, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x" * 43},
            "no auth": bare,
            "this start's token": dict(os.environ),
        }
        said = await asyncio.gather(
            *(join("session", address, 20.0, env) for env in clients.values())
        )
    finally:
        await session.close(30)
    outcome = {name: line for name, (line, _) in zip(clients, said, strict=True)}
    assert outcome["this start's token"] == "joined", outcome
    for name in ("no token", "wrong token", "no auth"):
        assert outcome[name].startswith("refused:") and "auth token" in outcome[name], outcome
    # The token was this start's alone: not written to Ray's default file, and gone with it.
    assert DEFAULT_TOKEN_FILE.exists() == token_file
    assert {name: os.environ.get(name) for name in env_before} == env_before


@pytest.fixture
def temp_dir() -> Iterator[str]:
    """A folder for Ray's files, short enough for the socket paths inside (107 bytes)."""
    made = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.mark.parametrize("pointer", ["stale record", "RAY_ADDRESS"])
async def test_the_private_ray_never_joins_another(
    pointer: str, temp_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pointer == "stale record":
        # What a killed `ray start --head` leaves behind: ray.init() would try to join it.
        Path(temp_dir, "ray_current_cluster").write_text(UNREACHABLE)
    else:
        monkeypatch.setenv("RAY_ADDRESS", UNREACHABLE)
    backend = RayBackend(
        device="cpu", weights=WEIGHTS, threads=1, workers=1, connect_timeout=20,
        init_options={"num_cpus": 1, "_temp_dir": temp_dir},
    )  # fmt: skip
    await backend.start()
    try:
        assert backend.capacity == 1
        assert ray.get_runtime_context().gcs_address.split(":")[-1] != "9"
    finally:
        await backend.close()


async def test_actors_that_wait_for_room_fail_the_start_within_its_timeout() -> None:
    before = children()
    with token_auth():
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            # Ray's one CPU is reserved: the engine actor waits for room.
            await placement_group([{"CPU": 1}]).ready()
            backend = RayBackend(device="cpu", weights=WEIGHTS, threads=1, workers=1,
                                 start_timeout=3)  # fmt: skip
            loop = asyncio.get_running_loop()
            begun = loop.time()
            with pytest.raises(BackendError, match="did not start within 3 s"):
                await asyncio.wait_for(backend.start(), 30)
            took = loop.time() - begun
            assert 3 <= took < 3 + CLOSE_MARGIN + 1, took
            assert backend.state == "closed" and backend.capacity == 0
        finally:
            ray.shutdown()
    assert children() <= before


# ----- closing ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[RayBackend]:
    """A backend with its own private Ray, not started yet; closed at the end if need be."""
    made = RayBackend(device="cpu", weights=WEIGHTS, threads=1, workers=1,
                      init_options={"num_cpus": 1})  # fmt: skip
    yield made
    await made.close()


async def test_close_with_a_hung_job_keeps_to_the_grace_and_margin(backend: RayBackend) -> None:
    before = children()
    await backend.start()
    [pid] = backend.worker_pids.values()
    handle = backend.submit(job(steps=LONG))
    await first_progress(aiter(handle))
    os.kill(pid, signal.SIGSTOP)  # it can no longer see a stop request
    begun = time.monotonic()
    await backend.close(grace=1.0)
    took = time.monotonic() - begun
    # The bot gives close(grace=1.0) 6 s in all.
    assert took < 1.0 + CLOSE_MARGIN + 1.0, took
    assert handle.result == Cancelled(handle.job_id, SHUTDOWN)
    await until_exited([pid])
    assert not ray.is_initialized()
    assert children() <= before


@pytest.mark.parametrize("moment", ["while Ray starts", "while the actors load"])
async def test_close_during_start_cancels_it_and_ends_what_it_started(
    backend: RayBackend, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = children()
    joined = LogEvent("ray node joined")
    caplog.set_level(logging.INFO, logger="engine.ray_backend")
    logging.getLogger("engine.ray_backend").addHandler(joined)
    try:
        starting = asyncio.create_task(backend.start())
        if moment == "while Ray starts":
            await asyncio.sleep(0)  # start() runs up to its wait for ray.init's thread
            assert not ray.is_initialized()
        else:
            await joined.seen.wait()  # Ray is up, the actor starts are under way
        begun = time.monotonic()
        await backend.close(grace=10.0)
        took = time.monotonic() - begun
    finally:
        logging.getLogger("engine.ray_backend").removeHandler(joined)
    with pytest.raises(BackendError, match=SHUTDOWN):
        await starting
    assert took < 10.0 + CLOSE_MARGIN, took
    assert not ray.is_initialized()
    assert children() <= before
    with pytest.raises(BackendError):
        backend.submit(job())

"""A private ``redis-server`` of the test's own, to pause, freeze, kill and restart.

`PrivateRedis` starts ``redis-server`` on a free loopback port, in a temporary directory,
with nothing saved, and waits until it answers PING. The faults it makes:

- `PrivateRedis.pause` sends ``DEBUG SLEEP`` from a connection of its own: the server
  answers nothing for that long, then carries on (a stop-the-world pause);
- `PrivateRedis.freeze` and `PrivateRedis.thaw` send SIGSTOP and SIGCONT, for a pause with
  no set end;
- `PrivateRedis.kill` sends SIGKILL (a crash), and `PrivateRedis.restart` starts a new
  server on the same port, empty, since nothing was saved.

Every process is ended by its PID: by `PrivateRedis.stop` (or the ``with`` block, or the
`private_redis` fixture), and, should a test leave one behind, when the object is collected
or the interpreter exits. The shared Redis on port 6379 is never touched.

Without ``redis-server`` on PATH (or ``BUTTRESS_TEST_REDIS_SERVER`` naming it), the tests
that need one skip, saying how to install it, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service_check import in_ci

HOST = "127.0.0.1"
EXECUTABLE = os.environ.get("BUTTRESS_TEST_REDIS_SERVER", "redis-server")
HOW_TO_INSTALL = (
    "install it with `apt-get install redis-server` (or `brew install redis`),"
    " or point BUTTRESS_TEST_REDIS_SERVER at a redis-server executable"
)
START_TIMEOUT = 5.0  # until a new server answers PING
STOP_TIMEOUT = 5.0  # until a signalled server has exited
START_ATTEMPTS = 5  # a port can be briefly taken: try again, a little later each time
SHARED_PORT = 6379  # the machine's own Redis: never ours to start, pause or kill
PROBE_TIMEOUT = 0.05  # a PING unanswered this long on loopback: the server is not answering


def require_redis_server() -> str:
    """The ``redis-server`` executable; skip (or, in CI, fail) the test when there is none."""
    path = shutil.which(EXECUTABLE)
    if path is None:
        message = f"{EXECUTABLE} is not installed: {HOW_TO_INSTALL}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
        pytest.skip(message)
    return path


@functools.cache
def server_version(executable: str = EXECUTABLE) -> tuple[int, int, int]:
    """The version of ``redis-server``, from ``redis-server --version``."""
    output = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    if found is None:
        raise RuntimeError(f"cannot read the version of {executable}: {output!r}")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


class PrivateRedis:
    """A ``redis-server`` process on a loopback port of its own, started at once.

    Args:
        port: The port to listen on; a free one when 0.
        executable: The ``redis-server`` to run.
    """

    def __init__(self, port: int = 0, *, executable: str = EXECUTABLE) -> None:
        if port == SHARED_PORT:
            raise ValueError(f"port {SHARED_PORT} is the shared Redis's; leave it alone")
        self.port = port
        self._executable = executable
        self._state = _State(Path(tempfile.mkdtemp(prefix="buttress-redis-")))
        self._finalizer = weakref.finalize(self, self._state.end)  # on collection or exit
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- where --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The PID of the running server; `RuntimeError` when there is none."""
        process = self._state.process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"no redis-server is running on port {self.port}")
        return process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (answering or not: paused and frozen count)."""
        process = self._state.process
        return process is not None and process.poll() is None

    @property
    def frozen(self) -> bool:
        return self._state.frozen

    def client(self, timeout: float = 0.5, *, port: int = 0, **options: Any) -> redis.Redis:
        """A `redis.Redis` on this server: ``timeout`` on every socket, no retries.

        ``port`` is another way there (a `FaultProxy`'s); other ``options`` go to `redis.Redis`.
        It is closed by `stop`, if the test has not closed it.
        """
        settings: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        client = redis.Redis(host=HOST, port=port or self.port, **(settings | options))
        self._state.clients.append(client)
        return client

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING within ``timeout``, on a new connection."""
        try:
            with socket.create_connection((HOST, self.port), timeout) as sock:
                sock.sendall(_command("PING"))
                return _read_line(sock) == b"+PONG"
        except OSError:
            return False

    # -- faults -------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Make the server answer nothing for ``seconds``; return as soon as it has stopped.

        ``DEBUG SLEEP`` goes from a connection of its own, whose answer a background thread
        waits for. When this returns, the server is asleep, and about ``seconds`` less the
        time this took (under 0.1 s as a rule) are left.
        """
        _ = self.pid  # ours is running: DEBUG goes to no other server
        sock = socket.create_connection((HOST, self.port), timeout=seconds + STOP_TIMEOUT)
        try:
            sock.sendall(_command("DEBUG", "SLEEP", f"{seconds:.3f}"))
        except OSError:
            sock.close()
            raise
        answer: list[bytes] = []
        waiter = threading.Thread(
            target=_await_answer, args=(sock, answer), name=f"redis-{self.port}-sleep", daemon=True
        )
        waiter.start()
        self._state.threads.append(waiter)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and waiter.is_alive():
            if not self.ping(PROBE_TIMEOUT):
                return  # asleep
            time.sleep(0.005)  # the server has not read DEBUG SLEEP yet
        if not waiter.is_alive():
            raise RuntimeError(f"DEBUG SLEEP did not put the server to sleep: {answer}")
        raise RuntimeError("the server kept answering after DEBUG SLEEP was sent")

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): it answers nothing until `thaw`."""
        process = self._state.process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"no redis-server is running on port {self.port}")
        process.send_signal(signal.SIGSTOP)
        self._state.frozen = True
        _wait_for_state(process.pid, stopped=True)

    def thaw(self) -> None:
        """Continue a frozen process (SIGCONT); what it was sent meanwhile is answered now."""
        process = self._state.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            _wait_for_state(process.pid, stopped=False)
        self._state.frozen = False

    def kill(self) -> None:
        """Kill the process (SIGKILL) and wait until it has gone: a crash. The port stays ours."""
        self._state.kill()

    def restart(self) -> None:
        """Start a new server on the same port (killing the old one if alive), empty."""
        if not self._finalizer.alive:
            raise RuntimeError("a stopped PrivateRedis cannot restart; make a new one")
        self._state.kill()
        self._start()

    def stop(self) -> None:
        """End the server for good (SIGKILL, reaped) and remove its files; idempotent."""
        self._finalizer()

    # -- machinery ----------------------------------------------------------------------

    def _start(self) -> None:
        fixed = self.port != 0
        log = self._state.directory / "redis.log"
        for attempt in range(START_ATTEMPTS):
            port = self.port if fixed else _free_port()
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [self._executable, *self._arguments(port)],
                    cwd=self._state.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            self._state.process = process
            self._state.frozen = False
            self.port = port
            if self._answering(process):
                return
            self._state.kill()
            if attempt < START_ATTEMPTS - 1:
                time.sleep(0.05 * (attempt + 1))  # a port in use is often free a moment later
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def _arguments(self, port: int) -> list[str]:
        arguments = [
            *("--port", str(port)),
            *("--bind", HOST),
            *("--save", ""),
            *("--appendonly", "no"),
            *("--daemonize", "no"),
            *("--dir", str(self._state.directory)),
            *("--logfile", ""),  # to stdout, that is redis.log
        ]
        if server_version(self._executable) >= (7, 0, 0):  # DEBUG is off by default since 7.0
            arguments += ["--enable-debug-command", "yes"]
        return arguments

    def _answering(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait until ``process`` itself answers on the port (not another server there)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # exited: the port was taken, as a rule
            if self._process_id() == process.pid:
                return True
            time.sleep(0.01)
        return False

    def _process_id(self, timeout: float = 0.2) -> int | None:
        """The PID the server on our port reports (``INFO server``), if one answers."""
        try:
            with socket.create_connection((HOST, self.port), timeout) as sock:
                sock.sendall(_command("INFO", "server"))
                info = _read_bulk(sock)
        except OSError:
            return None
        found = re.search(rb"^process_id:(\d+)", info, re.MULTILINE)
        return int(found.group(1)) if found else None

    def __enter__(self) -> PrivateRedis:  # noqa: PYI034 - not meant to be subclassed
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        process = self._state.process
        pid = process.pid if process is not None and process.poll() is None else None
        return f"PrivateRedis(port={self.port}, pid={pid})"


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A `PrivateRedis` of the test's own, stopped afterwards, whatever the outcome."""
    executable = require_redis_server()
    with PrivateRedis(executable=executable) as server:
        yield server


class _State:
    """What a `PrivateRedis` must clean up, held apart from it so a finalizer can."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.threads: list[threading.Thread] = []  # DEBUG SLEEP waiters
        self.clients: list[redis.Redis] = []

    def kill(self) -> None:
        """SIGKILL the process, by its PID, and reap it."""
        process, self.process = self.process, None
        self.frozen = False
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)  # ends a stopped process too
        process.wait(STOP_TIMEOUT)

    def end(self) -> None:
        """Kill the process, close the clients, wait for the threads, remove the directory."""
        self.kill()  # nothing is saved, so there is nothing a gentler signal would finish
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        deadline = time.monotonic() + STOP_TIMEOUT
        for thread in self.threads:  # their connections ended with the server
            thread.join(max(0.0, deadline - time.monotonic()))
        self.threads.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode(), *(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)]
    )


def _read_line(sock: socket.socket) -> bytes:
    """The first line the server sends, without its CRLF (bounded by the socket's timeout)."""
    data = b""
    for _ in range(64):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if b"\r\n" in data:
            break
    return data.split(b"\r\n", 1)[0]


def _read_bulk(sock: socket.socket) -> bytes:
    """A bulk string answer (``$<length>``, then the bytes), or b"" for any other."""
    data = b""
    for _ in range(256):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n")
        if not head.startswith(b"$") or len(body) >= int(head[1:]) + 2:
            break
    head, _, body = data.partition(b"\r\n")
    return body[: int(head[1:])] if head.startswith(b"$") and head[1:].isdigit() else b""


def _await_answer(sock: socket.socket, answer: list[bytes]) -> None:
    """Wait for the answer to ``DEBUG SLEEP`` (or the end of the server), then close."""
    with sock, contextlib.suppress(OSError):
        answer.append(_read_line(sock))


def _wait_for_state(pid: int, *, stopped: bool) -> None:
    """Wait (at most a second) until the kernel shows ``pid`` stopped, or running again."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            time.sleep(0.01)  # no /proc here: give the signal a moment instead
            return
        if (state in {"T", "t"}) == stopped:
            return
        time.sleep(0.002)

"""A loopback TCP proxy that breaks the link to a real server the ways networks and servers do.

`FaultProxy` listens on a port of its own on ``127.0.0.1`` and forwards each connection to
``target``. The faults, each undone by its pair:

- `drop` closes every forwarded connection; new ones are still accepted (a server restart
  that clients reconnect to at once);
- `refuse` closes the listener, so new connections are refused, and leaves the open ones
  flowing (a server that has stopped accepting); `restore` listens again on the same port;
- `cut` is `drop` and `refuse` together (a dead server); `restore` heals it;
- `stall` holds the bytes in both directions, connections open, until `flow` (a slow or hung
  server; new connections are accepted and held too).

Each fault is in force when its method returns. Leaving the ``with`` block (or `close`) cuts
the link and waits for every thread, so no socket or thread outlives the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType

CONNECT_TIMEOUT = 2.0  # to the target, per accepted connection
JOIN_TIMEOUT = 2.0  # for the threads a fault ends, all together
MAX_STALL = 60.0  # a connection held longer than this is dropped, so no test hangs for ever
MAX_ACCEPTS = 10_000  # connections per listener, a bound on the accepting loop


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; `cut` kills the link, `restore` heals it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)  # wakes stalled pumps and `stall`
        self._open: set[socket.socket] = set()  # forwarded sockets not dropped yet
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._pumps: set[threading.Thread] = set()
        self._stalled = False
        self._sending = 0  # pumps past the gate, writing
        self.restore()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    def connections(self) -> int:
        """How many forwarded connections are open (not dropped, not ended by either side)."""
        with self._lock:
            return len(self._open) // 2

    # -- faults -------------------------------------------------------------------------

    def restore(self) -> None:
        """Listen again (on the same port) and forward new connections; a no-op if listening."""
        if self._listener is not None:
            return
        self._join([self._acceptor] if self._acceptor else [])  # the old one has seen its close
        listener = self._listen()
        self.port = listener.getsockname()[1]
        acceptor = threading.Thread(
            target=self._accept, args=(listener,), name=f"fault-proxy-{self.port}", daemon=True
        )
        with self._lock:
            self._listener, self._acceptor = listener, acceptor
        acceptor.start()

    def refuse(self) -> None:
        """Close the listener: new connections are refused, open ones keep flowing."""
        with self._lock:
            listener, self._listener = self._listener, None
            acceptor = self._acceptor
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close does not)
            listener.close()
        self._join([acceptor] if acceptor else [])

    def drop(self) -> None:
        """Close every forwarded connection, as a restarting server would; keep accepting."""
        with self._gate:
            doomed, self._open = self._open, set()
            pumps = set(self._pumps)
            self._gate.notify_all()  # stalled pumps of these connections give up
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._join(pumps)
        for sock in doomed:
            sock.close()  # the pumps have, unless one outlived JOIN_TIMEOUT

    def cut(self) -> None:
        """Close the listener and every forwarded connection, as a dead server would."""
        self.refuse()  # first, so no connection slips in between
        self.drop()

    def stall(self) -> None:
        """Hold the bytes in both directions until `flow`; the connections stay open."""
        deadline = time.monotonic() + JOIN_TIMEOUT
        with self._gate:
            self._stalled = True
            # A write already past the gate finishes first: after this, nothing gets through.
            self._gate.wait_for(lambda: self._sending == 0, deadline - time.monotonic())

    def flow(self) -> None:
        """Forward again, the held bytes first, in order."""
        with self._gate:
            self._stalled = False
            self._gate.notify_all()

    def close(self) -> None:
        """Cut the link for good and wait for every thread."""
        self.cut()
        self.flow()

    # -- machinery ----------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        """A listener on ``self.port`` (any free port the first time)."""
        deadline = time.monotonic() + 1.0
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
            except OSError:
                listener.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # the port is briefly someone else's; rare, and bounded
                continue
            listener.listen(16)
            return listener

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(MAX_ACCEPTS):
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused or cut
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
            except OSError:
                client.close()  # the target is down: the client sees its connection end
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            link.pumps = [
                threading.Thread(
                    target=self._forward,
                    args=(link, source, sink),
                    name=f"fault-proxy-{self.port}-{way}",
                    daemon=True,
                )
                for way, source, sink in (("up", client, upstream), ("down", upstream, client))
            ]
            with self._lock:
                live = self._listener is listener  # not refused while connecting upstream
                if live:
                    self._open.update(link.sockets)
                    self._pumps.update(link.pumps)
            if not live:
                link.close()
                return
            for pump in link.pumps:
                pump.start()
        with self._lock:  # MAX_ACCEPTS reached: refuse from now on
            if self._listener is listener:
                self._listener = None
        listener.close()

    def _forward(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            self._pump(source, sink)
        finally:
            with contextlib.suppress(OSError):
                source.shutdown(socket.SHUT_RDWR)  # whatever `_pump` did, the other pump wakes
            with self._lock:
                self._pumps.discard(threading.current_thread())
                self._open.difference_update(link.sockets)
                link.running -= 1
                last = link.running == 0
            if last:
                link.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` to ``sink`` until either ends; subclasses may hold the bytes back."""
        try:
            while data := source.recv(65536):
                if not self._pass_gate(source):
                    return
                try:
                    sink.sendall(data)
                finally:
                    with self._gate:
                        self._sending -= 1
                        self._gate.notify_all()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _pass_gate(self, source: socket.socket) -> bool:
        """Wait while stalled; count a write in flight and say whether ``source`` is still open."""
        with self._gate:
            self._gate.wait_for(lambda: not self._stalled or source not in self._open, MAX_STALL)
            if self._stalled or source not in self._open:
                return False  # dropped, or held past MAX_STALL
            self._sending += 1
            return True

    @staticmethod
    def _join(threads: Iterable[threading.Thread]) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:  # noqa: PYI034 - not meant to be subclassed
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Link:
    """One forwarded connection: the client's socket, the target's, and a pump each way."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sockets = (client, upstream)
        self.pumps: list[threading.Thread] = []
        self.running = 2  # pumps not finished yet; the last one closes the sockets

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

"""A TCP forwarder to PostgreSQL that counts the queries its clients send: their round trips.

psycopg2 speaks PostgreSQL's simple query protocol: every round trip a client makes is one
``Query`` message (type ``Q``), its own ``BEGIN`` and ``COMMIT`` included. The forwarder reads
the client's side of each connection as messages (the startup message untyped, then a type
byte and a length each) and counts those. Connect to it without TLS (``sslmode=disable``):
an encrypted stream cannot be read.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.proxy import close_quietly, pump

_FLOWING = threading.Event()  # the server's side is forwarded as it comes, never held
_FLOWING.set()


class QueryCounter:
    """Forwards 127.0.0.1:``port`` (a free one) to ``target``; ``queries`` counts ``Q``s sent,
    ``sent`` keeps the start of each."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self.sent: list[str] = []  # each query's text, its first 200 characters
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def queries(self) -> int:
        return len(self.sent)

    def close(self) -> None:
        self._closed.set()
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._client_side, args=(client, upstream), daemon=True).start()
            forward = (upstream, client, _FLOWING)
            threading.Thread(target=pump, args=forward, daemon=True).start()

    def _client_side(self, client: socket.socket, upstream: socket.socket) -> None:
        pending, started = b"", False
        try:
            while chunk := client.recv(65536):
                pending += chunk
                while (whole := _message_size(pending, started)) and len(pending) >= whole:
                    if started and pending[:1] == b"Q":
                        with self._lock:
                            self.sent.append(
                                pending[5 : min(whole - 1, 205)].decode(errors="replace")
                            )
                    pending, started = pending[whole:], True
                upstream.sendall(chunk)  # counted first: its answer cannot come back before
        except OSError:
            pass
        finally:
            close_quietly(client)
            close_quietly(upstream)


def _message_size(pending: bytes, started: bool) -> int:
    """The size of the message ``pending`` starts with; 0 while its header is incomplete.

    The startup message is a length (counting itself) and no type; every later one a type
    byte, then a length counting itself but not the type."""
    if not started:
        return struct.unpack("!i", pending[:4])[0] if len(pending) >= 4 else 0
    return struct.unpack("!i", pending[1:5])[0] + 1 if len(pending) >= 5 else 0

"""A TCP forwarder to PostgreSQL that counts the queries its clients send: their round trips.

psycopg2 speaks PostgreSQL's simple query protocol: every round trip a client makes is one
``Query`` message (type ``Q``), its own ``BEGIN`` and ``COMMIT`` included. The forwarder reads
the client's side of each connection as messages (the startup message untyped, then a type
byte and a length each) and counts those. Connect to it without TLS (``sslmode=disable``):
an encrypted stream cannot be read.
"""

from __future__ import annotations

import socket
import struct
import threading

from tests.proxy import CuttableProxy, close_quietly, pump


class QueryCounter(CuttableProxy):
    """Forwards a free port (``port``) to ``target``; ``queries`` counts the ``Q``s sent,
    ``sent`` keeps the start of each."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.sent: list[str] = []  # each query's text, its first 200 characters
        self._counting = threading.Lock()
        super().__init__(0, target[1], target[0])

    @property
    def queries(self) -> int:
        return len(self.sent)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        threading.Thread(target=self._client_side, args=(client, upstream), daemon=True).start()
        server_side = (upstream, client, self._flowing)
        threading.Thread(target=pump, args=server_side, daemon=True).start()

    def _client_side(self, client: socket.socket, upstream: socket.socket) -> None:
        pending, started = b"", False
        try:
            while chunk := client.recv(65536):
                pending += chunk
                while (whole := _message_size(pending, started)) and len(pending) >= whole:
                    if started and pending[:1] == b"Q":
                        with self._counting:
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

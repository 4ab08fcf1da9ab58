"""A TCP forwarder a test can cut or stall: the network faults between one client and a server."""

from __future__ import annotations

import contextlib
import socket
import threading

from confluent_kafka.admin import ConfigResource

from allocation.adapters.kafka import admin_client
from allocation.config import Settings


class CuttableProxy:
    """Forwards 127.0.0.1:``listen_port`` (0: a free one, then ``port``) to
    ``target_host``:``target_port`` until cut.

    ``cut()`` closes every open connection and refuses new ones (the client sees
    the server vanish); ``restore()`` accepts again. ``stall()`` stops forwarding
    in both directions without closing anything, new connections included (a
    stuck middlebox: each kernel still acknowledges what it receives, so no TCP
    timer fires on either end); ``resume()`` forwards again what waited.
    """

    def __init__(self, listen_port: int, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                close_quietly(sock)
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self.cut()
        self._acceptor.join(5)
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._closed.is_set():  # e.g. out of file descriptors: clients now hang
                    print(f"proxy :{self._target[1]} stops accepting ({exc})")
                return
            if self._cut.is_set():
                close_quietly(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError as exc:
                # Said, not silent: a client whose connections all close at once is
                # otherwise indistinguishable from a cut (seen once in relay-partitioned).
                print(f"proxy :{self._target[1]} unreachable ({exc}); closing the client")
                close_quietly(client)
                continue
            upstream.settimeout(None)  # a quiet server is not a broken one: wait as long as it
            with self._lock:
                self._open += [client, upstream]
            self._forward(client, upstream)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        """Start forwarding both ways; a subclass may read the client's side on its way."""
        for source, sink in ((client, upstream), (upstream, client)):
            ends = (source, sink, self._flowing)
            threading.Thread(target=pump, args=ends, daemon=True).start()


def pump(source: socket.socket, sink: socket.socket, flowing: threading.Event) -> None:
    """Forward what ``source`` sends to ``sink`` while ``flowing``, until either closes."""
    try:
        while flowing.wait() and (chunk := source.recv(65536)):
            flowing.wait()  # stalled meanwhile: hold what was read
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        close_quietly(source)
        close_quietly(sink)


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def proxied_listener(settings: Settings) -> tuple[int, int]:
    """The broker's PROXIED listener as (advertised port, bound port), asked of the broker
    itself: a proxy on the first forwarding to the second sits between the broker and every
    client that bootstraps at the first, on whatever ports this stack was started with."""
    admin = admin_client(settings)
    broker = next(iter(admin.list_topics(timeout=10).brokers))
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
    config = admin.describe_configs([resource])[resource].result(timeout=10)

    def port(key: str) -> int:
        for listener in config[key].value.split(","):
            if listener.startswith("PROXIED://"):
                return int(listener.rsplit(":", 1)[1])
        raise LookupError(f"the broker has no PROXIED listener in {key}: {config[key].value}")

    return port("advertised.listeners"), port("listeners")

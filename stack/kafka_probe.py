"""Ask a Kafka broker for its cluster metadata, in ~10 ms and with no JVM.

Usage: python3 stack/kafka_probe.py HOST:PORT [TIMEOUT_SECONDS]
Prints "cluster=<id> brokers=<n> controller=<id>" and exits 0 when the broker answers
a Metadata request (v4) that lists at least one broker; exits 1 otherwise.
Standard library only: stack/stack.sh uses it for readiness and status checks.
"""

import socket
import struct
import sys

API_VERSIONS, METADATA = 18, 3


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client_id = b"stack-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _read(sock, 4))[0]
    resp = _read(sock, size)
    if struct.unpack(">i", resp[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return resp[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def _string(data: bytes, pos: int) -> tuple[str | None, int]:
    (n,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if n < 0:
        return None, pos
    return data[pos : pos + n].decode(), pos + n


def probe(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        # ApiVersions v0: every broker answers it; check Metadata v4 is supported.
        resp = _request(sock, API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack_from(">hi", resp, 0)
        if error:
            raise RuntimeError(f"ApiVersions error code {error}")
        ranges = {
            key: (lo, hi)
            for key, lo, hi in (struct.unpack_from(">hhh", resp, 6 + 6 * i) for i in range(count))
        }
        lo, hi = ranges.get(METADATA, (99, -1))
        if not lo <= 4 <= hi:
            raise RuntimeError(f"broker does not serve Metadata v4 (range {lo}..{hi})")
        # Metadata v4: topics = null (all), allow_auto_topic_creation = false.
        resp = _request(sock, METADATA, 4, 2, struct.pack(">ib", -1, 0))
        pos = 4  # throttle_time_ms
        (brokers,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(brokers):
            pos += 4  # node_id
            _, pos = _string(resp, pos)  # host
            pos += 4  # port
            _, pos = _string(resp, pos)  # rack
        cluster, pos = _string(resp, pos)
        (controller,) = struct.unpack_from(">i", resp, pos)
        if brokers < 1:
            raise RuntimeError("metadata lists no broker yet")
        return f"cluster={cluster} brokers={brokers} controller={controller}"


def main() -> int:
    host, _, port = sys.argv[1].rpartition(":")
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    try:
        print(probe(host or "127.0.0.1", int(port), timeout))
    except (OSError, RuntimeError, struct.error) as exc:
        print(f"no answer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

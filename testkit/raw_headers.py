"""Produce a record whose header name is raw bytes, which no Python Kafka client allows.

confluent-kafka encodes header names as UTF-8 text, so a hostile producer's
header (a name that is not UTF-8) can only be written through librdkafka itself:
this calls the copy of librdkafka that confluent-kafka ships, through ctypes,
with ``rd_kafka_produceva`` (no varargs to marshal).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import confluent_kafka

_END, _TOPIC, _VALUE, _KEY, _MSGFLAGS, _HEADER = 0, 1, 4, 5, 7, 9
_F_COPY = 0x2


class _Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t)]


class _Mem(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Value(ctypes.Union):
    _fields_ = [
        ("cstr", ctypes.c_char_p),
        ("i", ctypes.c_int),
        ("mem", _Mem),
        ("header", _Header),
        ("_pad", ctypes.c_char * 64),
    ]


class _VU(ctypes.Structure):  # rd_kafka_vu_t
    _fields_ = [("vtype", ctypes.c_int), ("u", _Value)]


def _librdkafka() -> ctypes.CDLL:
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    lib = ctypes.CDLL(str(next(libs.glob("librdkafka*.so*"))))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, *[ctypes.c_char_p] * 3, ctypes.c_size_t]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_VU), ctypes.c_size_t]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


def _bytes(data: bytes) -> _Mem:
    return _Mem(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data))


def produce_with_raw_header(
    bootstrap_servers: str, topic: str, key: bytes, value: bytes, name: bytes, header: bytes
) -> None:
    """Produce one record with header ``name`` = ``header``, both raw bytes; waits for the ack."""
    lib = _librdkafka()
    error = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    if lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap_servers.encode(), error, 512):
        raise RuntimeError(error.value.decode())
    producer = lib.rd_kafka_new(0, conf, error, 512)  # 0: RD_KAFKA_PRODUCER
    if not producer:
        raise RuntimeError(error.value.decode())
    try:
        args = (_VU * 6)()
        args[0].vtype, args[0].u.cstr = _TOPIC, topic.encode()
        args[1].vtype, args[1].u.mem = _KEY, _bytes(key)
        args[2].vtype, args[2].u.mem = _VALUE, _bytes(value)
        args[3].vtype, args[3].u.i = _MSGFLAGS, _F_COPY
        # The name is a C string: raw bytes without a NUL are taken as they are.
        args[4].vtype = _HEADER
        args[4].u.header = _Header(name, _bytes(header).ptr, len(header))
        args[5].vtype = _END
        if lib.rd_kafka_produceva(producer, args, 5):
            raise RuntimeError(f"librdkafka refused the record for {topic}")
        if lib.rd_kafka_flush(producer, 30_000):
            raise RuntimeError(f"the broker did not acknowledge the record on {topic}")
    finally:
        lib.rd_kafka_destroy(producer)

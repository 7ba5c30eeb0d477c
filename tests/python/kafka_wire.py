"""A tiny, dependency-free Kafka wire encoder/decoder for bad-input and idempotence tests.

Only what the tests need: request framing (header v1/v2), ApiVersions v0 (and any version
number, to provoke UNSUPPORTED_VERSION), Metadata v1, InitProducerId v1, Produce v9 (flexible),
Fetch v4, and magic-v2 record batches with CRC32C. Field layouts follow the Kafka protocol
guide (kafka.apache.org/protocol).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

# API keys.
PRODUCE = 0
FETCH = 1
METADATA = 3
API_VERSIONS = 18
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
TXN_OFFSET_COMMIT = 28
END_TXN = 26
WRITE_TXN_MARKERS = 27
DESCRIBE_PRODUCERS = 61
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66

# Error codes.
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
UNKNOWN_MEMBER_ID = 25
INVALID_RECORD = 87

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1


# ---------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), table driven, pure Python.

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Primitive encoders.

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (also used for varlong: Python ints are unbounded)."""
    return uvarint((v << 1) ^ (v >> 63))


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    raw = s.encode()
    return i16(len(raw)) + raw


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def compact_bytes(b: bytes | None) -> bytes:
    if b is None:
        return uvarint(0)
    return uvarint(len(b) + 1) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = uvarint(0)


# ---------------------------------------------------------------------------------------------
# Primitive decoder.

class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"short read: need {n} bytes at {self.pos}, have {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def _unpack(self, fmt: str, n: int) -> int:
        return struct.unpack(fmt, self.take(n))[0]

    def i8(self) -> int:
        return self._unpack(">b", 1)

    def i16(self) -> int:
        return self._unpack(">h", 2)

    def i32(self) -> int:
        return self._unpack(">i", 4)

    def u32(self) -> int:
        return self._unpack(">I", 4)

    def i64(self) -> int:
        return self._unpack(">q", 8)

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def nullable_bytes(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self.take(n)

    def compact_bytes(self) -> bytes | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)

    def array_len(self) -> int:
        return self.i32()

    def compact_array_len(self) -> int:
        return self.uvarint() - 1

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag id
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------------------------
# Record batches (magic v2).

@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    offset_delta: int = 0
    timestamp_delta: int = 0


def _nullable_varbytes(b: bytes | None) -> bytes:
    return varint(-1) if b is None else varint(len(b)) + b


def encode_record(r: Record) -> bytes:
    body = (
        i8(0)
        + varint(r.timestamp_delta)
        + varint(r.offset_delta)
        + _nullable_varbytes(r.key)
        + _nullable_varbytes(r.value)
        + varint(len(r.headers))
        + b"".join(varint(len(k.encode())) + k.encode() + _nullable_varbytes(v) for k, v in r.headers)
    )
    return varint(len(body)) + body


def encode_batch(
    values: list[bytes | None],
    *,
    keys: list[bytes | None] | None = None,
    base_timestamp: int = 1_700_000_000_000,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    corrupt_crc: bool = False,
    codec: int = 0,
    compress=None,
    transactional: bool = False,
) -> bytes:
    """One magic-v2 record batch with base offset 0 and a correct (or broken) CRC. With `codec`
    (1 gzip, 2 snappy, 3 lz4, 4 zstd) the records are passed through `compress(records) -> bytes`,
    which may also return anything else, to test what a broker does with a bad body."""
    keys = keys if keys is not None else [None] * len(values)
    records = b"".join(
        encode_record(Record(key=k, value=v, offset_delta=i, timestamp_delta=i))
        for i, (k, v) in enumerate(zip(keys, values))
    )
    if compress is not None:
        records = compress(records)
    after_crc = (
        i16(codec | (0x10 if transactional else 0))  # attributes: codec, CreateTime, not control
        + i32(len(values) - 1)  # last offset delta
        + i64(base_timestamp)
        + i64(base_timestamp + len(values) - 1)  # max timestamp
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(values))
        + records
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_length = i32(0) + i8(2) + struct.pack(">I", crc) + after_crc  # leader epoch, magic, crc
    return i64(0) + i32(len(after_length)) + after_length


@dataclass
class Batch:
    base_offset: int
    attributes: int
    last_offset_delta: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    crc_ok: bool
    record_count: int
    records: list[Record]  # decoded only for uncompressed batches

    @property
    def compression(self) -> int:
        return self.attributes & 0x07


def decode_batches(data: bytes) -> list[Batch]:
    """Split a Fetch `records` blob into batches (a trailing partial batch is ignored, as Kafka allows)."""
    batches = []
    r = Reader(data)
    while r.remaining() >= 12:
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break
        b = Reader(r.take(length))
        b.i32()  # partition leader epoch
        magic = b.i8()
        if magic != 2:
            raise ValueError(f"unexpected magic {magic}")
        crc = b.u32()
        crc_ok = crc32c(b.data[b.pos:]) == crc
        attributes = b.i16()
        last_offset_delta = b.i32()
        b.i64()  # base timestamp
        b.i64()  # max timestamp
        producer_id = b.i64()
        producer_epoch = b.i16()
        base_sequence = b.i32()
        count = b.i32()
        records = []
        if attributes & 0x07 == 1:  # gzip: decode the decompressed body the same way
            import gzip
            b = Reader(gzip.decompress(b.data[b.pos:]))
        if attributes & 0x07 in (0, 1):
            for _ in range(count):
                rec = Reader(b.take(b.varint()))
                rec.i8()
                ts_delta = rec.varint()
                off_delta = rec.varint()
                klen = rec.varint()
                key = None if klen < 0 else rec.take(klen)
                vlen = rec.varint()
                value = None if vlen < 0 else rec.take(vlen)
                headers = []
                for _ in range(rec.varint()):
                    hk = rec.take(rec.varint()).decode()
                    hlen = rec.varint()
                    headers.append((hk, None if hlen < 0 else rec.take(hlen)))
                records.append(Record(key, value, headers, off_delta, ts_delta))
        batches.append(Batch(base_offset, attributes, last_offset_delta, producer_id,
                             producer_epoch, base_sequence, crc_ok, count, records))
    return batches


# ---------------------------------------------------------------------------------------------
# Connection and requests.

# Request header version per (api key, version): v2 (flexible, with tagged fields) from the
# first flexible version of each API, v1 before it.
_FIRST_FLEXIBLE = {PRODUCE: 9, FETCH: 12, METADATA: 9, API_VERSIONS: 3, INIT_PRODUCER_ID: 2,
                   ADD_PARTITIONS_TO_TXN: 3, END_TXN: 3, ADD_OFFSETS_TO_TXN: 3,
                   TXN_OFFSET_COMMIT: 3, WRITE_TXN_MARKERS: 1,
                   DESCRIBE_PRODUCERS: 0, DESCRIBE_TRANSACTIONS: 0, LIST_TRANSACTIONS: 0}


class ConnectionClosed(Exception):
    pass


class KafkaConnection:
    """A blocking socket speaking Kafka framing. Responses are returned as raw body bytes."""

    def __init__(self, bootstrap: str, timeout: float = 15.0, client_id: str = "strata-wire-test"):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_id = client_id
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KafkaConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def is_closed_by_peer(self, wait: float = 10.0) -> bool:
        """True if the peer closes (EOF or reset) within `wait` seconds without sending data."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return data == b""

    def request(self, api_key: int, api_version: int, body: bytes, *,
                flexible_header: bool | None = None, flexible_response_header: bool | None = None,
                expect_response: bool = True) -> bytes | None:
        self.correlation_id += 1
        cid = self.correlation_id
        if flexible_header is None:
            flexible_header = api_version >= _FIRST_FLEXIBLE.get(api_key, 1 << 15)
        header = i16(api_key) + i16(api_version) + i32(cid) + string(self.client_id)
        if flexible_header:
            header += NO_TAGS
        payload = header + body
        self.send_raw(i32(len(payload)) + payload)
        if not expect_response:
            return None
        size = struct.unpack(">i", self.recv_exact(4))[0]
        resp = Reader(self.recv_exact(size))
        got = resp.i32()
        assert got == cid, f"correlation id mismatch: sent {cid}, got {got}"
        # ApiVersions responses always use header v0 (no tagged fields), whatever the version.
        if flexible_response_header is None:
            flexible_response_header = flexible_header and api_key != API_VERSIONS
        if flexible_response_header:
            resp.skip_tags()
        return resp.data[resp.pos:]

    # -- ApiVersions -------------------------------------------------------------------------

    def api_versions(self, version: int = 0) -> tuple[int, dict[int, tuple[int, int]]]:
        """Send ApiVersions at `version` with an empty (v0-v2) body; parse a v0-shaped answer.

        For a version the broker does not support, Kafka answers with a v0 response holding
        UNSUPPORTED_VERSION and its supported ranges, so this also parses that case.
        """
        body = b"" if version < 3 else compact_string("strata-wire") + compact_string("0") + NO_TAGS
        raw = self.request(API_VERSIONS, version, body)
        r = Reader(raw)
        error = r.i16()
        ranges = {}
        flexible_body = version >= 3 and error == NONE
        try:
            n = r.compact_array_len() if flexible_body else r.array_len()
            for _ in range(n):
                key, lo, hi = r.i16(), r.i16(), r.i16()
                if flexible_body:
                    r.skip_tags()
                ranges[key] = (lo, hi)
        except ValueError as e:
            shape = "v3 (flexible)" if flexible_body else "v0 (int32 array, as Kafka sends on error)"
            raise AssertionError(f"ApiVersions v{version} response (error {error}) is not {shape}: "
                                 f"{e}; body={raw.hex()}") from None
        return error, ranges

    # -- Metadata v1 ---------------------------------------------------------------------------

    def metadata(self, topics: list[str] | None) -> dict:
        body = i32(-1) if topics is None else array([string(t) for t in topics])
        r = Reader(self.request(METADATA, 1, body))
        brokers = []
        racks = {}
        for _ in range(r.array_len()):
            node, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
            brokers.append((node, host, port))
            racks[node] = rack
        controller = r.i32()
        out_topics = {}
        for _ in range(r.array_len()):
            err, name, _internal = r.i16(), r.string(), r.i8()
            parts, leaders, replicas = {}, {}, {}
            for _ in range(r.array_len()):
                perr, pidx, leader = r.i16(), r.i32(), r.i32()
                replicas[pidx] = [r.i32() for _ in range(r.array_len())]
                for _ in range(r.array_len()):
                    r.i32()  # isr
                parts[pidx] = perr
                leaders[pidx] = leader
            out_topics[name] = {"error": err, "partitions": parts, "leaders": leaders,
                                "replicas": replicas}
        return {"brokers": brokers, "racks": racks, "controller": controller,
                "topics": out_topics}

    # -- InitProducerId v1 ---------------------------------------------------------------------

    def init_producer_id(self, producer_id: int = -1,
                         producer_epoch: int = -1) -> tuple[int, int, int]:
        """Returns (error_code, producer_id, producer_epoch) for a non-transactional producer.
        With a producer id and epoch (InitProducerId v3, KIP-360) the producer asks for its
        epoch to be bumped, as librdkafka does to recover from a sequence error."""
        if producer_id < 0:
            r = Reader(self.request(INIT_PRODUCER_ID, 1, string(None) + i32(60_000)))
        else:
            body = (compact_string(None) + i32(60_000) + i64(producer_id) + i16(producer_epoch)
                    + NO_TAGS)
            r = Reader(self.request(INIT_PRODUCER_ID, 3, body))
        r.i32()  # throttle
        return r.i16(), r.i64(), r.i16()

    def init_transactional(self, transactional_id: str,
                           timeout_ms: int = 60_000) -> tuple[int, int, int]:
        """InitProducerId v1 for a transactional id: (error_code, producer_id, epoch)."""
        r = Reader(self.request(INIT_PRODUCER_ID, 1, string(transactional_id) + i32(timeout_ms)))
        r.i32()  # throttle
        return r.i16(), r.i64(), r.i16()

    # -- Transactions (AddPartitionsToTxn v1, EndTxn v1 / v5) ---------------------------------

    def add_partitions_to_txn(self, transactional_id: str, producer_id: int, epoch: int,
                              topic: str, partitions: list[int]) -> dict[int, int]:
        """AddPartitionsToTxn v1; returns {partition: error_code}."""
        body = (string(transactional_id) + i64(producer_id) + i16(epoch)
                + array([string(topic) + array([i32(p) for p in partitions])]))
        r = Reader(self.request(ADD_PARTITIONS_TO_TXN, 1, body))
        r.i32()  # throttle
        codes = {}
        for _ in range(r.array_len()):
            r.string()
            for _ in range(r.array_len()):
                partition = r.i32()
                codes[partition] = r.i16()
        return codes

    def end_txn(self, transactional_id: str, producer_id: int, epoch: int, commit: bool,
                version: int = 1) -> tuple[int, int, int]:
        """EndTxn at `version` (1 or 5); returns (error_code, producer_id, epoch), the last
        two as the broker answers them (v5: the bumped epoch, KIP-890; else -1, -1)."""
        if version >= 3:
            body = compact_string(transactional_id) + i64(producer_id) + i16(epoch) + i8(
                1 if commit else 0) + NO_TAGS
        else:
            body = string(transactional_id) + i64(producer_id) + i16(epoch) + i8(
                1 if commit else 0)
        r = Reader(self.request(END_TXN, version, body))
        r.i32()  # throttle
        error = r.i16()
        if version >= 5:
            return error, r.i64(), r.i16()
        return error, -1, -1

    def add_offsets_to_txn(self, transactional_id: str, producer_id: int, epoch: int,
                           group: str) -> int:
        """AddOffsetsToTxn v1; returns the error code."""
        body = string(transactional_id) + i64(producer_id) + i16(epoch) + string(group)
        r = Reader(self.request(ADD_OFFSETS_TO_TXN, 1, body))
        r.i32()  # throttle
        return r.i16()

    def txn_offset_commit(self, transactional_id: str, producer_id: int, epoch: int,
                          group: str, generation: int, member_id: str, topic: str,
                          partition: int, offset: int) -> int:
        """TxnOffsetCommit v3 with the consumer's group metadata; the partition's code."""
        part = i32(partition) + i64(offset) + i32(-1) + compact_string(None) + NO_TAGS
        topic_body = compact_string(topic) + compact_array([part]) + NO_TAGS
        body = (compact_string(transactional_id) + compact_string(group) + i64(producer_id)
                + i16(epoch) + i32(generation) + compact_string(member_id)
                + compact_string(None) + compact_array([topic_body]) + NO_TAGS)
        r = Reader(self.request(TXN_OFFSET_COMMIT, 3, body))
        r.i32()  # throttle
        code = None
        for _ in range(r.compact_array_len()):
            r.compact_string()
            for _ in range(r.compact_array_len()):
                r.i32()
                code = r.i16()
                r.skip_tags()
            r.skip_tags()
        return code

    def write_txn_markers(self, producer_id: int, epoch: int, topic: str, partitions: list[int],
                          commit: bool = False) -> dict[int, int]:
        """WriteTxnMarkers v1 (what kafka-transactions.sh abort sends); {partition: error}."""
        topic_body = compact_string(topic) + compact_array([i32(p) for p in partitions]) + NO_TAGS
        marker = (i64(producer_id) + i16(epoch) + i8(1 if commit else 0)
                  + compact_array([topic_body]) + i32(0) + NO_TAGS)
        r = Reader(self.request(WRITE_TXN_MARKERS, 1, compact_array([marker]) + NO_TAGS))
        codes = {}
        for _ in range(r.compact_array_len()):
            r.i64()
            for _ in range(r.compact_array_len()):
                r.compact_string()
                for _ in range(r.compact_array_len()):
                    partition = r.i32()
                    codes[partition] = r.i16()
                    r.skip_tags()
                r.skip_tags()
            r.skip_tags()
        return codes

    def api_versions_features(self) -> dict[str, tuple[int, int]]:
        """ApiVersions v3: the finalized features as {name: (min_level, max_level)}."""
        body = compact_string("strata-wire") + compact_string("0") + NO_TAGS
        r = Reader(self.request(API_VERSIONS, 3, body, flexible_response_header=False))
        assert r.i16() == NONE
        for _ in range(r.compact_array_len()):
            r.i16(), r.i16(), r.i16()
            r.skip_tags()
        r.i32()  # throttle
        finalized = {}
        for _ in range(r.uvarint()):  # tagged fields
            tag, size = r.uvarint(), r.uvarint()
            data = Reader(r.take(size))
            if tag == 2:  # finalized features
                for _ in range(data.compact_array_len()):
                    name = data.compact_string()
                    max_level, min_level = data.i16(), data.i16()
                    data.skip_tags()
                    finalized[name] = (min_level, max_level)
        return finalized

    # -- Produce v9 ----------------------------------------------------------------------------

    def produce(self, topic: str, partition: int, records: bytes, acks: int = -1,
                timeout_ms: int = 30_000, transactional_id: str | None = None) -> dict:
        """Produce one partition's records; returns that partition's response fields."""
        partition_data = i32(partition) + compact_bytes(records) + NO_TAGS
        topic_data = compact_string(topic) + compact_array([partition_data]) + NO_TAGS
        body = compact_string(transactional_id) + i16(acks) + i32(timeout_ms) + compact_array([topic_data]) + NO_TAGS
        r = Reader(self.request(PRODUCE, 9, body))
        result = None
        for _ in range(r.compact_array_len()):
            name = r.compact_string()
            for _ in range(r.compact_array_len()):
                p = {
                    "topic": name,
                    "partition": r.i32(),
                    "error_code": r.i16(),
                    "base_offset": r.i64(),
                    "log_append_time_ms": r.i64(),
                    "log_start_offset": r.i64(),
                }
                record_errors = []
                for _ in range(r.compact_array_len()):
                    record_errors.append((r.i32(), r.compact_string()))
                    r.skip_tags()
                p["record_errors"] = record_errors
                p["error_message"] = r.compact_string()
                r.skip_tags()
                if name == topic and p["partition"] == partition:
                    result = p
            r.skip_tags()
        assert result is not None, f"no response for {topic}/{partition}"
        return result

    # -- Fetch v4 ------------------------------------------------------------------------------

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 8 << 20,
              max_wait_ms: int = 100) -> dict:
        """Fetch one partition (read_uncommitted); returns error, high watermark and batches."""
        part = i32(partition) + i64(offset) + i32(max_bytes)
        body = (i32(-1) + i32(max_wait_ms) + i32(1) + i32(max_bytes) + i8(0)
                + array([string(topic) + array([part])]))
        r = Reader(self.request(FETCH, 4, body))
        r.i32()  # throttle
        result = None
        for _ in range(r.array_len()):
            name = r.string()
            for _ in range(r.array_len()):
                pidx, err, hw, _lso = r.i32(), r.i16(), r.i64(), r.i64()
                n_aborted = r.array_len()
                for _ in range(max(n_aborted, 0)):
                    r.i64()
                    r.i64()
                records = r.nullable_bytes() or b""
                if name == topic and pidx == partition:
                    result = {"error_code": err, "high_watermark": hw,
                              "batches": decode_batches(records)}
        assert result is not None, f"no fetch response for {topic}/{partition}"
        return result

    def fetch_all(self, topic: str, partition: int, start: int = 0) -> tuple[int, list[Batch]]:
        """All batches from `start` to the high watermark; returns (high_watermark, batches)."""
        batches: list[Batch] = []
        offset = start
        while True:
            resp = self.fetch(topic, partition, offset)
            assert resp["error_code"] == NONE, f"fetch error {resp['error_code']}"
            hw = resp["high_watermark"]
            new = [b for b in resp["batches"] if b.base_offset + b.last_offset_delta >= offset]
            batches += new
            if new:
                offset = new[-1].base_offset + new[-1].last_offset_delta + 1
            if offset >= hw or not new:
                return hw, batches

"""Listeners, TLS/mTLS and SASL (PLAIN, SCRAM-SHA-256/512) with real clients.

One `strata dev` runs four listeners (PLAINTEXT, SSL with optional client certificates,
SASL_PLAINTEXT and SASL_SSL) over certificates that `openssl` generates in the test; users are
created with `strata user create` (SCRAM credentials in the catalog). kcat, confluent-kafka,
kafka-python and aiokafka produce, consume and join groups over SSL and SASL_SSL. Negative
tests speak the wire protocol directly (tests/python/kafka_wire.py) to see Kafka's error codes:
wrong password, wrong SCRAM proof, unknown user (the same failure), a request before
authentication, an expired session without re-authentication.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import StrataServer, find_strata_bin, free_port, _teardown
from kafka_wire import ConnectionClosed, KafkaConnection, Reader, i32, string

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58
PASSWORD = "alice-secret"
REAUTH_MS = 3000


# ---------------------------------------------------------------------------------------------
# Certificates, generated with openssl for each run.

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path, server_cn: str = "strata-test-server") -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate with
    subject CN=alice,OU=clients,O=Strata Test (mTLS)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "ca.pem").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "2", "-subj", "/CN=Strata Test CA", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key.new",
             "-out", "server.csr", "-subj", f"/CN={server_cn}", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem.new", "-days", "2",
             "-extfile", "server.ext", cwd=d)
    # Swap key and certificate in place (a reload must see a matching pair).
    os.replace(d / "server.key.new", d / "server.key")
    os.replace(d / "server.pem.new", d / "server.pem")
    if not (d / "client.pem").exists():
        (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
                 "-out", "client.csr", "-subj", "/O=Strata Test/OU=clients/CN=alice", cwd=d)
        _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "client.pem", "-days", "2",
                 "-extfile", "client.ext", cwd=d)
    return {name: d / f"{name}" for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


# ---------------------------------------------------------------------------------------------
# The server.

class SecureServer:
    def __init__(self, server: StrataServer, ports: dict[str, int], certs: dict[str, Path]):
        self.server = server
        self.ports = ports
        self.certs = certs

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def user(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
        cmd = [str(self.server.binary), "user", *args,
               "--catalog", f"http://127.0.0.1:{self.server.catalog_port}"]
        return subprocess.run(cmd, input=password, capture_output=True, text=True, timeout=60)


def start_secure(tmp_path_factory, name: str, extra: list[str] | None = None) -> SecureServer:
    binary = find_strata_bin()
    base = tmp_path_factory.mktemp(name)
    certs = make_certs(base / "certs")
    server = StrataServer(binary, base / "data", base / "strata.log", auto_create_topics=True)
    ports = {"PLAINTEXT": server.port, "SSL": free_port(), "SASL_PLAINTEXT": free_port(),
             "SASL_SSL": free_port()}
    listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
    server.args += [
        "--listeners", listeners,
        "--advertised-listeners", listeners,
        "--ssl-cert-file", str(certs["server.pem"]),
        "--ssl-key-file", str(certs["server.key"]),
        "--ssl-client-ca-file", str(certs["ca.pem"]),
        "--ssl-client-auth", "requested",
        "--ssl-reload-interval-ms", "300",
        "--ssl-principal-mapping-rules", r"RULE:^.*CN=([^,]*).*$/$1/L,DEFAULT",
        *(extra or []),
    ]
    server.data_dir.mkdir()
    previous = os.environ.get("RUST_LOG")
    # The mTLS test reads the principal of its connection from the log.
    os.environ["RUST_LOG"] = "info,strata_agent::connection=debug"
    try:
        server.start()
    finally:
        if previous is None:
            os.environ.pop("RUST_LOG")
        else:
            os.environ["RUST_LOG"] = previous
    secure = SecureServer(server, ports, certs)
    created = secure.user("create", "alice", "--password-stdin", password=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr + server.log_tail()
    return secure


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    s = start_secure(tmp_path_factory, "secure", ["--connections-max-reauth-ms", str(REAUTH_MS)])
    yield s
    _teardown(s.server)


@pytest.fixture(scope="module")
def secure_long_sessions(tmp_path_factory):
    """As `secure`, without a session lifetime: kcat's librdkafka 2.0 predates KIP-368
    re-authentication (librdkafka 2.2), so its connections would be closed at expiry."""
    s = start_secure(tmp_path_factory, "secure-long")
    yield s
    _teardown(s.server)


def rdkafka_config(secure: SecureServer, listener: str, mechanism: str | None = None,
                   user: str = "alice", password: str = PASSWORD) -> dict:
    conf = {"bootstrap.servers": secure.address(listener), "security.protocol": listener}
    if "SSL" in listener:
        conf["ssl.ca.location"] = str(secure.certs["ca.pem"])
    if listener == "SSL":
        conf["ssl.certificate.location"] = str(secure.certs["client.pem"])
        conf["ssl.key.location"] = str(secure.certs["client.key"])
    if mechanism:
        conf.update({"sasl.mechanism": mechanism, "sasl.username": user,
                     "sasl.password": password})
    return conf


# ---------------------------------------------------------------------------------------------
# Real clients over SSL and SASL_SSL.

def confluent_round_trip(conf: dict, topic: str, count: int = 20) -> None:
    from confluent_kafka import Consumer, Producer
    producer = Producer({**conf, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == [f"v{i}".encode() for i in range(count)]


@pytest.mark.parametrize("listener,mechanism", [
    ("SSL", None),
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
])
def test_confluent_produces_consumes_and_joins_groups(secure, topic, listener, mechanism):
    """Goal: confluent-kafka (librdkafka 2.16) works over mTLS and each SASL mechanism."""
    confluent_round_trip(rdkafka_config(secure, listener, mechanism), topic)


def test_metadata_advertises_the_listener_of_the_connection(secure, topic):
    """Goal: as Kafka, Metadata answers with the brokers' addresses of the listener the
    client connected on."""
    from confluent_kafka.admin import AdminClient
    for listener, mechanism in [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512"),
                                ("PLAINTEXT", None)]:
        admin = AdminClient(rdkafka_config(secure, listener, mechanism))
        brokers = admin.list_topics(timeout=30).brokers
        ports = {b.port for b in brokers.values()}
        assert ports == {secure.ports[listener]}, (listener, brokers)


def _kcat_args(secure: SecureServer, listener: str, mechanism: str | None) -> list[str]:
    args = []
    for k, v in rdkafka_config(secure, listener, mechanism).items():
        args += ["-b", v] if k == "bootstrap.servers" else ["-X", f"{k}={v}"]
    return args


@pytest.mark.parametrize("listener,mechanism", [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512")])
def test_kcat_produces_consumes_and_joins_a_group(secure_long_sessions, topic, listener,
                                                  mechanism):
    """Goal: kcat (librdkafka 2.0) over mTLS and SASL_SSL: produce, consume, balanced
    consumer group."""
    secure = secure_long_sessions
    base = _kcat_args(secure, listener, mechanism)
    lines = "\n".join(f"m{i}" for i in range(10)) + "\n"
    produced = subprocess.run(["kcat", *base, "-P", "-t", topic], input=lines, text=True,
                              capture_output=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(["kcat", *base, "-C", "-t", topic, "-o", "beginning", "-e",
                               "-q"], capture_output=True, text=True, timeout=60)
    assert consumed.stdout.split() == [f"m{i}" for i in range(10)], consumed.stderr
    group = subprocess.run(["kcat", *base, "-G", f"g-{uuid.uuid4().hex[:6]}", topic,
                            "-o", "beginning", "-e", "-q"],
                           capture_output=True, text=True, timeout=90)
    assert sorted(group.stdout.split()) == sorted(f"m{i}" for i in range(10)), group.stderr


@pytest.mark.parametrize("listener,mechanism", [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512"),
                                                ("SASL_SSL", "PLAIN")])
def test_kafka_python_produces_consumes_and_joins_a_group(secure, topic, listener, mechanism):
    """Goal: kafka-python 3.0 over mTLS and SASL_SSL."""
    from kafka import KafkaConsumer, KafkaProducer
    conf = {"bootstrap_servers": secure.address(listener), "security_protocol": listener,
            "ssl_cafile": str(secure.certs["ca.pem"])}
    if listener == "SSL":
        conf.update(ssl_certfile=str(secure.certs["client.pem"]),
                    ssl_keyfile=str(secure.certs["client.key"]))
    if mechanism:
        conf.update(sasl_mechanism=mechanism, sasl_plain_username="alice",
                    sasl_plain_password=PASSWORD)
    producer = KafkaProducer(**conf)
    for i in range(10):
        producer.send(topic, f"v{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id=f"g-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", consumer_timeout_ms=20000, **conf)
    got = []
    for message in consumer:
        got.append(message.value)
        if len(got) == 10:
            break
    consumer.commit()
    consumer.close()
    assert got == [f"v{i}".encode() for i in range(10)]


@pytest.mark.parametrize("listener,mechanism", [("SSL", None), ("SASL_SSL", "SCRAM-SHA-256"),
                                                ("SASL_SSL", "PLAIN")])
def test_aiokafka_produces_consumes_and_joins_a_group(secure, topic, listener, mechanism):
    """Goal: aiokafka 0.14 over mTLS and SASL_SSL."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def run() -> list[bytes]:
        context = create_ssl_context(
            cafile=str(secure.certs["ca.pem"]),
            certfile=str(secure.certs["client.pem"]) if listener == "SSL" else None,
            keyfile=str(secure.certs["client.key"]) if listener == "SSL" else None)
        conf = {"bootstrap_servers": secure.address(listener), "security_protocol": listener,
                "ssl_context": context}
        if mechanism:
            conf.update(sasl_mechanism=mechanism, sasl_plain_username="alice",
                        sasl_plain_password=PASSWORD)
        producer = AIOKafkaProducer(**conf)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"v{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, group_id=f"g-{uuid.uuid4().hex[:6]}",
                                    auto_offset_reset="earliest", **conf)
        await consumer.start()
        got = []
        try:
            async with asyncio.timeout(60):
                async for message in consumer:
                    got.append(message.value)
                    if len(got) == 10:
                        break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == [f"v{i}".encode() for i in range(10)]


# ---------------------------------------------------------------------------------------------
# The wire: Kafka's error codes.

def connect(secure: SecureServer, listener: str) -> KafkaConnection:
    conn = KafkaConnection(secure.address(listener))
    if "SSL" in listener:
        context = ssl.create_default_context(cafile=str(secure.certs["ca.pem"]))
        conn.sock = context.wrap_socket(conn.sock, server_hostname="127.0.0.1")
    return conn


def handshake(conn: KafkaConnection, mechanism: str) -> tuple[int, list[str]]:
    r = Reader(conn.request(SASL_HANDSHAKE, 1, string(mechanism)))
    code = r.i16()
    return code, [r.string() for _ in range(r.array_len())]


def authenticate(conn: KafkaConnection, token: bytes) -> tuple[int, str | None, bytes, int]:
    r = Reader(conn.request(SASL_AUTHENTICATE, 1, i32(len(token)) + token))
    code = r.i16()
    message = r.string()
    data = r.nullable_bytes() or b""
    return code, message, data, r.i64()


def plain(conn: KafkaConnection, user: str, password: str) -> tuple[int, str | None, int]:
    assert handshake(conn, "PLAIN")[0] == 0
    code, message, _, lifetime = authenticate(conn, f"\0{user}\0{password}".encode())
    return code, message, lifetime


def scram(conn: KafkaConnection, user: str, password: str, hash_name: str = "sha512",
          tamper: bool = False) -> tuple[int, str | None]:
    """RFC 5802 client; `tamper` flips a bit of the proof."""
    mechanism = {"sha256": "SCRAM-SHA-256", "sha512": "SCRAM-SHA-512"}[hash_name]
    assert handshake(conn, mechanism)[0] == 0
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    code, message, server_first, _ = authenticate(conn, f"n,,{first_bare}".encode())
    if code:
        return code, message
    fields = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = bytearray(a ^ b for a, b in zip(client_key, signature))
    if tamper:
        proof[0] ^= 1
    final = f"{without_proof},p={base64.b64encode(bytes(proof)).decode()}"
    code, message, server_final, _ = authenticate(conn, final.encode())
    if code == 0:
        server_key = hmac.new(salted, b"Server Key", hash_name).digest()
        expected = hmac.new(server_key, auth_message, hash_name).digest()
        assert server_final.decode() == "v=" + base64.b64encode(expected).decode()
    return code, message


def metadata_answered(conn: KafkaConnection) -> bool:
    try:
        conn.request(3, 1, i32(-1))  # Metadata v1, all topics
        return True
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return False


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_request_before_authentication_closes_the_connection(secure, listener):
    """Goal: before SASL authentication only ApiVersions and the SASL APIs are served;
    anything else closes the connection (as Kafka)."""
    with connect(secure, listener) as conn:
        code, versions = conn.api_versions(0)
        assert code == 0 and SASL_HANDSHAKE in versions and SASL_AUTHENTICATE in versions
        assert not metadata_answered(conn)
    with connect(secure, listener) as conn:
        # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then closed.
        code, _, _, _ = authenticate(conn, b"\0alice\0" + PASSWORD.encode())
        assert code == ILLEGAL_SASL_STATE
        assert conn.is_closed_by_peer()


def test_wrong_password_and_unknown_user_fail_alike(secure):
    """Goal: PLAIN with a wrong password and with a user that does not exist both get
    SASL_AUTHENTICATION_FAILED (58) with the same message, and the connection is closed."""
    answers = []
    for user, password in [("alice", "wrong"), ("nobody", PASSWORD)]:
        with connect(secure, "SASL_SSL") as conn:
            code, message, _ = plain(conn, user, password)
            answers.append((code, message))
            assert conn.is_closed_by_peer()
    assert answers[0] == answers[1] and answers[0][0] == SASL_AUTHENTICATION_FAILED, answers
    with connect(secure, "SASL_SSL") as conn:
        code, _, lifetime = plain(conn, "alice", PASSWORD)
        assert code == 0 and lifetime == REAUTH_MS
        assert metadata_answered(conn)


@pytest.mark.parametrize("hash_name", ["sha256", "sha512"])
def test_wrong_scram_proof_and_unknown_user_fail_alike(secure, hash_name):
    """Goal: a wrong SCRAM proof and an unknown user both fail at the final message with
    SASL_AUTHENTICATION_FAILED and one message; the right proof authenticates (and the
    server's signature checks out)."""
    answers = []
    for user, tamper in [("alice", True), ("nobody", False)]:
        with connect(secure, "SASL_PLAINTEXT") as conn:
            answers.append(scram(conn, user, PASSWORD, hash_name, tamper=tamper))
            assert conn.is_closed_by_peer()
    assert answers[0] == answers[1] and answers[0][0] == SASL_AUTHENTICATION_FAILED, answers
    with connect(secure, "SASL_PLAINTEXT") as conn:
        assert scram(conn, "alice", PASSWORD, hash_name) == (0, None)
        assert metadata_answered(conn)


def test_expired_session_without_reauthentication_is_closed(secure):
    """Goal: KIP-368: after connections.max.reauth.ms a connection that did not
    re-authenticate is closed at its next request; one that re-authenticated goes on."""
    stale = connect(secure, "SASL_SSL")
    fresh = connect(secure, "SASL_SSL")
    try:
        assert scram(stale, "alice", PASSWORD) == (0, None)
        assert scram(fresh, "alice", PASSWORD) == (0, None)
        time.sleep(REAUTH_MS / 1000 * 0.6)
        assert scram(fresh, "alice", PASSWORD) == (0, None)  # re-authentication
        time.sleep(REAUTH_MS / 1000 * 0.6)
        assert metadata_answered(fresh)
        assert not metadata_answered(stale)
    finally:
        stale.close()
        fresh.close()


def test_confluent_reauthenticates_and_keeps_producing(secure, topic):
    """Goal: librdkafka honours session_lifetime_ms (KIP-368) and keeps working past it."""
    from confluent_kafka import Producer
    producer = Producer(rdkafka_config(secure, "SASL_SSL", "SCRAM-SHA-512"))
    deadline = time.monotonic() + REAUTH_MS / 1000 * 2.5
    sent = 0
    while time.monotonic() < deadline:
        producer.produce(topic, value=b"x")
        assert producer.flush(10) == 0
        sent += 1
        time.sleep(0.2)
    assert sent > 5


def test_mtls_principal_and_certificate_reload(secure):
    """Goal: a client certificate's subject maps to its principal through
    ssl.principal.mapping.rules (CN, lower-cased); a new server certificate on disk is served
    to new connections without a restart (reload interval 300 ms)."""
    context = ssl.create_default_context(cafile=str(secure.certs["ca.pem"]))
    context.load_cert_chain(str(secure.certs["client.pem"]), str(secure.certs["client.key"]))
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            port = tls.getsockname()[1]
            tls.sendall(b"")
    deadline = time.monotonic() + 10
    pattern = re.compile(rf"peer=127\.0\.0\.1:{port}.*principal=User:alice")
    def log() -> str:  # without the terminal colours
        return re.sub(r"\x1b\[[0-9;]*m", "", secure.server.log_path.read_text(errors="replace"))

    while not pattern.search(log()):
        assert time.monotonic() < deadline, secure.server.log_tail()
        time.sleep(0.1)

    def served_subject() -> str:
        context = ssl.create_default_context(cafile=str(secure.certs["ca.pem"]))
        with socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                subject = dict(x[0] for x in tls.getpeercert()["subject"])
                return subject["commonName"]

    assert served_subject() == "strata-test-server"
    make_certs(secure.certs["ca.pem"].parent, server_cn="strata-test-server-renewed")
    deadline = time.monotonic() + 10
    while served_subject() != "strata-test-server-renewed":
        assert time.monotonic() < deadline, "the renewed certificate was not loaded"
        time.sleep(0.2)


def test_user_cli_and_kafka_scram_admin_apis(secure, topic):
    """Goal: `strata user list --json` shows mechanisms, never secrets; users created over
    Kafka's AlterUserScramCredentials authenticate; DescribeUserScramCredentials lists them;
    `strata user delete` removes a user, who then cannot authenticate."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    listed = secure.user("list", "--json")
    assert listed.returncode == 0, listed.stderr
    users = {u["user"]: u for u in json.loads(listed.stdout)["users"]}
    assert {c["mechanism"] for c in users["alice"]["credentials"]} == {
        "SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert "salt" not in listed.stdout and PASSWORD not in listed.stdout

    admin = AdminClient(rdkafka_config(secure, "SASL_SSL", "SCRAM-SHA-512"))
    upsert = UserScramCredentialUpsertion(
        "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-pw", b"salty")
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    described = admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=30)
    assert [c.mechanism for c in described.scram_credential_infos] == [
        ScramMechanism.SCRAM_SHA_256]
    with connect(secure, "SASL_PLAINTEXT") as conn:
        assert scram(conn, "bob", "bob-pw", "sha256") == (0, None)

    deleted = secure.user("delete", "bob", "--mechanism", "scram-sha256")
    assert deleted.returncode == 0, deleted.stderr
    with connect(secure, "SASL_PLAINTEXT") as conn:
        assert scram(conn, "bob", "bob-pw", "sha256")[0] == SASL_AUTHENTICATION_FAILED


# ---------------------------------------------------------------------------------------------
# The catalog's PostgreSQL connection over TLS.

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory):
    """A PostgreSQL cluster of its own (scripts/pg.sh, TLS variant): ssl=on with a server
    certificate for 127.0.0.1 generated here, and a pg_hba.conf that refuses TCP without TLS."""
    base = tmp_path_factory.mktemp("pgtls")
    certs = make_certs(base / "certs", server_cn="localhost")
    env = {**os.environ, "STRATA_PG_PORT": str(free_port()), "STRATA_PG_DIR": str(base / "pg"),
           "STRATA_PG_SSL_CERT": str(certs["server.pem"]),
           "STRATA_PG_SSL_KEY": str(certs["server.key"])}
    started = subprocess.run([str(REPO / "scripts" / "pg.sh"), "start"], env=env,
                             capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    url = subprocess.run([str(REPO / "scripts" / "pg.sh"), "url"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    yield url, certs
    subprocess.run([str(REPO / "scripts" / "pg.sh"), "stop"], env=env, timeout=60)


def run_catalog(url: str, tmp_path: Path) -> tuple[bool, str]:
    """Starts `strata catalog` on `url`; True once it serves gRPC, False when it exits."""
    binary = find_strata_bin()
    port = free_port()
    log = tmp_path / f"catalog-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "catalog", "--store", url,
                                 "--listen", f"127.0.0.1:{port}",
                                 "--metrics-listen", f"127.0.0.1:{free_port()}"],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False, log.read_text(errors="replace")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return True, log.read_text(errors="replace")
            time.sleep(0.1)
        pytest.fail(f"strata catalog neither served nor exited\n{log.read_text()}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_catalog_on_postgres_honours_sslmode(tls_postgres, tmp_path):
    """Goal: sslmode is honoured: require and verify-full (with the CA as sslrootcert)
    connect to a PostgreSQL that accepts only TLS; disable is refused by the server; verify-full
    with a CA that did not sign the server's certificate is refused by the catalog."""
    url, certs = tls_postgres
    ca = certs["ca.pem"]
    ok, log = run_catalog(f"{url}?sslmode=require", tmp_path)
    assert ok, log
    ok, log = run_catalog(f"{url}?sslmode=verify-full&sslrootcert={ca}", tmp_path)
    assert ok, log
    ok, log = run_catalog(f"{url}?sslmode=disable", tmp_path)
    assert not ok and "no encryption" in log, log
    other = make_certs(tmp_path / "other-ca")["ca.pem"]
    ok, log = run_catalog(f"{url}?sslmode=verify-ca&sslrootcert={other}", tmp_path)
    assert not ok, log

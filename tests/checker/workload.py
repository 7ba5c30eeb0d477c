"""The checker's clients: confluent-kafka producers and consumers, each a thread that writes
every op it invokes and every outcome it learns to the shared JSON-lines history
(format: check.py). Every value is unique ("<process>-<n>"), every offset is kept.

Workloads:
- queue: idempotent acks=all producers send to random partitions of a topic; assign-mode
  consumers read every partition from the start, forever.
- group: idempotent producers send to a second topic; members of one consumer group
  subscribe, poll, and commit synchronously after each poll; members leave and new ones
  join on a seeded schedule (rebalances); an observer reads the group's committed offsets.
"""

from __future__ import annotations

import json
import random
import threading
import time

import kafka_wire as kw
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

PENDING_MAX = 2000          # sends in flight per producer before it waits
POLL_BATCH = 500


class History:
    """The JSON-lines history file: one writer lock, an index per event, flushed per line so
    a run that dies keeps what happened until then."""

    def __init__(self, path):
        self.path = path
        self._file = open(path, "w")
        self._lock = threading.Lock()
        self._index = 0
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def add(self, process: str, type_: str, f: str, **fields) -> dict:
        with self._lock:
            event = {"index": self._index, "time": self.now(), "process": process,
                     "type": type_, "f": f, **fields}
            self._index += 1
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()
        return event

    def close(self) -> None:
        with self._lock:
            self._file.close()


def common_config(bootstrap: str) -> dict:
    return {"bootstrap.servers": bootstrap,
            "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 5000, "metadata.max.age.ms": 10000,
            "socket.keepalive.enable": True, "socket.timeout.ms": 10000}


class Client(threading.Thread):
    def __init__(self, name: str, history: History, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.process = name
        self.history = history
        self.stop_event = stop
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.body()
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            self.error = repr(e)
            self.history.add(self.process, "info", "crash", error=repr(e))

    def body(self) -> None:
        raise NotImplementedError


class Sender(Client):
    """An idempotent acks=all producer; a fatal producer error ends this process and a new
    one (a new process name) takes over, as Jepsen does with crashed clients."""

    def __init__(self, name, history, stop, bootstrap, topic, partitions, rate, seed):
        super().__init__(name, history, stop)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.rate = rate
        self.rng = random.Random(seed)

    def body(self) -> None:
        generation = 0
        while not self.stop_event.is_set():
            generation += 1
            process = f"{self.process}.{generation}"
            try:
                self._one_producer(process)
            except KafkaException as e:
                # A fatal producer error can surface from poll/flush too: this process is
                # over, a new one takes its place.
                self.history.add(process, "info", "crash", error=repr(e))
                self.stop_event.wait(1.0)

    def _one_producer(self, process: str) -> None:
        h, topic = self.history, self.topic
        pending: dict[str, int] = {}
        fatal: list[str] = []

        def report(err, msg):
            value = msg.value().decode()
            pending.pop(value, None)
            if err is None:
                h.add(process, "ok", "send", topic=topic, partition=msg.partition(),
                      value=value, offset=msg.offset())
            else:
                # Every error is indefinite: an idempotent producer's timed-out or failed
                # batch may still have been written.
                h.add(process, "info", "send", topic=topic, partition=msg.partition(),
                      value=value, error=str(err))
                if err.fatal():
                    fatal.append(str(err))

        producer = Producer({**common_config(self.bootstrap), "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5, "message.timeout.ms": 30000,
                             "request.timeout.ms": 10000, "retry.backoff.ms": 100,
                             "retry.backoff.max.ms": 1000})
        h.add(process, "info", "start")
        n = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_event.is_set() and not fatal:
            while len(pending) >= PENDING_MAX and not self.stop_event.is_set():
                producer.poll(0.1)
            n += 1
            value = f"{process}-{n}"
            partition = self.rng.randrange(self.partitions)
            h.add(process, "invoke", "send", topic=topic, partition=partition, value=value)
            pending[value] = partition
            try:
                producer.produce(topic, value=value.encode(), partition=partition,
                                 on_delivery=report)
            except (BufferError, KafkaException) as e:
                pending.pop(value, None)
                h.add(process, "fail", "send", topic=topic, partition=partition, value=value,
                      error=repr(e))
            next_at += interval
            producer.poll(max(0.0, next_at - time.monotonic()))
            if next_at < time.monotonic() - 1.0:
                next_at = time.monotonic()  # behind by more than a second: do not burst
        if fatal:
            h.add(process, "info", "crash", error=fatal[0])
            producer.purge()
            producer.poll(0)
            return
        left = producer.flush(30)
        h.add(process, "info", "stop", unanswered=left)


class Reader(Client):
    """Assign-mode consumer of every partition from offset 0 (the queue workload)."""

    def __init__(self, name, history, stop, bootstrap, topic, partitions):
        super().__init__(name, history, stop)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.positions: dict[int, int] = {}

    def body(self) -> None:
        h, topic = self.history, self.topic
        consumer = Consumer({**common_config(self.bootstrap),
                             "group.id": f"{self.process}-unused", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 200, "session.timeout.ms": 10000})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(self.partitions)])
        h.add(self.process, "ok", "assign", topic=topic, partitions=list(range(self.partitions)))
        try:
            while not self.stop_event.is_set():
                poll(h, self.process, consumer, topic, self.positions)
        finally:
            consumer.close()
            h.add(self.process, "info", "stop")


def poll(h: History, process: str, consumer: Consumer, topic: str,
         positions: dict[int, int], group: str | None = None) -> list:
    started = h.now()
    messages = consumer.consume(num_messages=POLL_BATCH, timeout=0.5)
    records, errors = [], []
    for m in messages:
        if m.error() is not None:
            errors.append(str(m.error()))
            continue
        records.append([m.partition(), m.offset(), m.value().decode()])
        positions[m.partition()] = m.offset() + 1
    extra = {"group": group} if group else {}
    if records or not errors:
        h.add(process, "ok", "poll", topic=topic, records=records, invoke_time=started, **extra)
    if errors:
        h.add(process, "info", "poll", topic=topic, error=errors[0], errors=len(errors), **extra)
    return records


class Member(Client):
    """One consumer-group member: subscribe, poll, commit synchronously after each poll;
    leaves when told to (the rebalance schedule)."""

    def __init__(self, name, history, stop, bootstrap, topic, group):
        super().__init__(name, history, stop)
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.leave = threading.Event()

    def body(self) -> None:
        h, topic, process = self.history, self.topic, self.process

        def on_assign(consumer, partitions):
            h.add(process, "ok", "assign", topic=topic, partitions=[p.partition for p in partitions])

        def on_revoke(consumer, partitions):
            h.add(process, "ok", "revoke", topic=topic, partitions=[p.partition for p in partitions])

        consumer = Consumer({**common_config(self.bootstrap), "group.id": self.group,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 200, "session.timeout.ms": 10000,
                             "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 60000})
        h.add(process, "info", "start")
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        positions: dict[int, int] = {}
        try:
            while not self.stop_event.is_set() and not self.leave.is_set():
                if poll(h, process, consumer, topic, positions, group=self.group):
                    self._commit(consumer)
        finally:
            consumer.close()
            h.add(process, "info", "stop")

    def _commit(self, consumer: Consumer) -> None:
        h = self.history
        started = h.now()
        try:
            done = consumer.commit(asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                return
            definite = err.code() in (KafkaError.REBALANCE_IN_PROGRESS,
                                      KafkaError.ILLEGAL_GENERATION,
                                      KafkaError.UNKNOWN_MEMBER_ID)
            h.add(self.process, "fail" if definite else "info", "commit", group=self.group,
                  topic=self.topic, error=str(err), invoke_time=started)
            return
        offsets = {str(tp.partition): tp.offset for tp in done or [] if tp.error is None}
        h.add(self.process, "ok", "commit", group=self.group, topic=self.topic,
              offsets=offsets, invoke_time=started)


class Observer(Client):
    """Reads the group's committed offsets every second (OffsetFetch, without joining)."""

    def __init__(self, name, history, stop, bootstrap, topic, partitions, group):
        super().__init__(name, history, stop)
        self.bootstrap, self.topic, self.partitions, self.group = \
            bootstrap, topic, partitions, group
        self.latest: dict[int, int] = {}

    def body(self) -> None:
        h = self.history
        consumer = Consumer({**common_config(self.bootstrap), "group.id": self.group,
                             "enable.auto.commit": False})
        try:
            while not self.stop_event.is_set():
                started = h.now()
                try:
                    tps = consumer.committed([TopicPartition(self.topic, p)
                                              for p in range(self.partitions)], timeout=10)
                except KafkaException as e:
                    h.add(self.process, "info", "committed", group=self.group,
                          topic=self.topic, error=str(e), invoke_time=started)
                else:
                    offsets = {str(tp.partition): tp.offset for tp in tps if tp.error is None}
                    self.latest = {int(p): o for p, o in offsets.items()}
                    h.add(self.process, "ok", "committed", group=self.group, topic=self.topic,
                          offsets=offsets, invoke_time=started)
                self.stop_event.wait(1.0)
        finally:
            consumer.close()


def batch_headers(bootstrap: str, topic: str, partition: int) -> list | str:
    """For a post-mortem: every stored batch's [base offset, last offset delta, producer id,
    producer epoch, base sequence], read with the raw wire client (kafka_wire)."""
    try:
        with kw.KafkaConnection(bootstrap.split(",")[0], timeout=30) as conn:
            _, batches = conn.fetch_all(topic, partition)
        return [[b.base_offset, b.last_offset_delta, b.producer_id, b.producer_epoch,
                 b.base_sequence] for b in batches]
    except Exception as e:  # noqa: BLE001 - diagnostics only
        return repr(e)


def final_read(h: History, bootstrap: str, topic: str, partitions: int,
               timeout_s: float = 120) -> None:
    """Reads every partition from its first offset to its high watermark; one final-read
    event per partition, complete or not."""
    consumer = Consumer({**common_config(bootstrap), "group.id": f"final-{topic}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 200})
    try:
        marks = {}
        errors: dict[int, str] = {}
        deadline = time.monotonic() + timeout_s
        for p in range(partitions):
            while True:
                try:
                    marks[p] = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                              timeout=10)
                    break
                except KafkaException as e:
                    if time.monotonic() > deadline:
                        errors[p] = str(e)
                        marks[p] = (0, 0)
                        break
        records: dict[int, list] = {p: [] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        done = {p for p in range(partitions) if marks[p][1] <= marks[p][0]}
        while len(done) < partitions and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=POLL_BATCH, timeout=1.0):
                if m.error() is not None:
                    errors.setdefault(m.partition(), str(m.error()))
                    continue
                records[m.partition()].append([m.offset(), m.value().decode()])
                if m.offset() + 1 >= marks[m.partition()][1]:
                    done.add(m.partition())
        for p in range(partitions):
            h.add("final", "ok", "final-read", topic=topic, partition=p, records=records[p],
                  log_start=marks[p][0], high_watermark=marks[p][1], complete=p in done,
                  error=errors.get(p), batches=batch_headers(bootstrap, topic, p))
    finally:
        consumer.close()

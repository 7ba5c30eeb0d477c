"""Compaction throughput: `strata dev` (compactor off) takes N 1 KiB JSON-ish records on 4
partitions, then a separate `strata compactor` rewrites them; prints input/output bytes, CPU
seconds of the compactor process and MB/s of input per core.
Usage: STRATA_BIN=... BENCH_DIR=/tmp/empty-dir python bench/compaction.py <codec> <records>"""
import base64, json, os, random, signal, subprocess, sys, time, urllib.request
from pathlib import Path
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
BIN = os.environ.get("STRATA_BIN", "target/debug/strata")
data = Path(os.environ.get("BENCH_DIR", "/tmp/strata-compaction-bench"))
data.mkdir(parents=True, exist_ok=True)
dev = subprocess.Popen([BIN, "dev", "--data-dir", str(data), "--listen", "127.0.0.1:19092",
    "--catalog-listen", "127.0.0.1:19093", "--metrics-listen", "127.0.0.1:19644",
    "--compaction", "false", "--flush-eager", "false", "--flush-interval-ms", "100"],
    stdout=open("dev.log", "w"), stderr=subprocess.STDOUT)
time.sleep(2)
a = AdminClient({"bootstrap.servers": "127.0.0.1:19092"})
a.create_topics([NewTopic("bench", 4, 1, config={"strata.compaction.age.ms": "0"})])["bench"].result()
p = Producer({"bootstrap.servers": "127.0.0.1:19092", "linger.ms": 20, "batch.size": 1000000,
              "compression.type": sys.argv[1]})
rnd = random.Random(1)
n = int(sys.argv[2])
for i in range(n):
    payload = base64.b64encode(rnd.randbytes(600)).decode()
    v = json.dumps({"id": i, "user": f"user-{rnd.randrange(10000)}", "ts": 1700000000000 + i,
                    "event": rnd.choice(["click", "view", "buy"]), "payload": payload})[:1024].encode()
    while True:
        try:
            p.produce("bench", key=str(i % 1000).encode(), value=v); break
        except BufferError:
            p.poll(0.05)
    if i % 1000 == 0: p.poll(0)
p.flush()
time.sleep(1)
def size(sub, ext): return sum(f.stat().st_size for f in (data / "objects" / sub).rglob("*" + ext))
seg = size("segments", ".seg")
comp = subprocess.Popen([BIN, "compactor", "--catalog", "http://127.0.0.1:19093",
    "--object-store", f"file://{data.resolve()}/objects", "--metrics-listen", "127.0.0.1:19646",
    "--interval-ms", "100", "--gc-grace-ms", "600000"], stdout=open("comp.log", "w"), stderr=subprocess.STDOUT)
t0 = time.monotonic()
def m(name):
    t = urllib.request.urlopen("http://127.0.0.1:19646/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith(name))
time.sleep(0.5)
while True:
    try:
        if m("strata_compactor_input_bytes_total") >= seg * 0.95 and size("segments", ".seg") >= 0:
            # all chunks done when a pass writes nothing new
            before = m("strata_compactor_files_written_total"); time.sleep(0.5)
            if m("strata_compactor_files_written_total") == before: break
    except Exception: pass
    time.sleep(0.2)
wall = time.monotonic() - t0 - 0.5
stat = open(f"/proc/{comp.pid}/stat").read().split()
cpu = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
inp = m("strata_compactor_input_bytes_total"); out = m("strata_compactor_output_bytes_total")
print(json.dumps({"codec": sys.argv[1], "records": n, "segment_bytes": seg, "input_bytes": inp,
  "parquet_bytes": size("parquet", ".parquet"), "output_bytes": out, "files": m("strata_compactor_files_written_total"),
  "wall_s": round(wall, 2), "cpu_s": cpu, "MBps_per_core": round(inp / 1e6 / cpu, 1), "MBps_wall": round(inp/1e6/wall, 1)}))
comp.send_signal(signal.SIGTERM); comp.wait()
dev.send_signal(signal.SIGTERM); dev.wait()

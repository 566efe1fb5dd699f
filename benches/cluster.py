#!/usr/bin/env python3
"""Several instances, measured: takeover after SIGKILL, planned handover after SIGTERM, and
the CPU and command latency of three instances against one for the same fleet.

    python3 benches/cluster.py takeover [KILLS] [TERMS]   # default 20 kills, 10 SIGTERMs
    python3 benches/cluster.py cpu [SECONDS]              # default 60 s per side

Runs on loopback with the release binaries (benches/cluster.sh builds them): a three-node
etcd, mosquitto with persistent sessions, heatgrid-sim (1,500 stations, telemetry every 5 s at
QoS 1) and heatgrid instances (32 partitions, lease TTL 10 s). Every process is started here
and stopped by PID; every wait is bounded. Needs paho-mqtt (the test virtualenv has it).

A takeover is timed from the signal to the first command with a new epoch (the new owner's)
on the command topic of each station of the victim's partitions, the slowest station of each
run; the moment the other instances lead all of the victim's partitions (their API) is
reported beside it. The CPU comparison runs control following telemetry, so that every
command has a reading→command latency.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("HEATGRID_BIN", os.path.join(ROOT, "target", "release"))
TOKEN = "cluster-bench-token-0123456"
STATIONS = int(os.environ.get("BENCH_STATIONS", "1500"))
PARTITIONS = 32
CONTROL_ON = "tick"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on {port}")


class Rig:
    def __init__(self, work, instances=3, cluster=True):
        self.work = work
        self.procs = {}
        self.etcd_ports = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        initial = ",".join(f"n{i}=http://127.0.0.1:{peer[i]}" for i in range(3))
        if cluster:
            for i in range(3):
                c = self.etcd_ports[i]
                self.start(f"etcd{i}", ["etcd", "--name", f"n{i}", "--data-dir", f"{work}/etcd{i}",
                           "--listen-client-urls", f"http://127.0.0.1:{c}",
                           "--advertise-client-urls", f"http://127.0.0.1:{c}",
                           "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                           "--initial-cluster", initial, "--initial-cluster-state", "new",
                           "--initial-cluster-token", f"bench-{self.etcd_ports[0]}"])
            for p in self.etcd_ports:
                wait_port(p, "etcd")
        self.broker = free_port()
        os.makedirs(f"{work}/mq", exist_ok=True)
        with open(f"{work}/mosquitto.conf", "w") as f:
            f.write(f"listener {self.broker} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {work}/mq/\nmax_queued_messages 0\n"
                    "max_inflight_messages 0\nset_tcp_nodelay true\nlog_dest none\n")
        self.start("mosquitto", ["mosquitto", "-c", f"{work}/mosquitto.conf"])
        wait_port(self.broker, "mosquitto")
        self.start("sim", [f"{BIN}/heatgrid-sim", "--port", str(self.broker), "-n", str(STATIONS),
                           "--telemetry-period-s", "5", "--warmup-h", "1"])
        self.ids = [f"st-{n:03}" for n in range(1, STATIONS + 1)]
        self.api = {}
        self.names = [chr(ord("a") + i) for i in range(instances)]
        for name in self.names:
            self.write_config(name, cluster)
            self.start_instance(name)

    def start(self, name, argv):
        log = open(f"{self.work}/{name}.log", "ab")
        env = dict(os.environ, HG_TOKEN=TOKEN, RUST_LOG="info,rumqttc=warn")
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)

    def write_config(self, name, cluster):
        api = self.api.get(name) or free_port()
        self.api[name] = api
        lines = [
            "[engine]", f'data_dir = "{self.work}/data-{name}"', "tick_s = 5",
            "command_valid_for_s = 30", f'control_on = "{CONTROL_ON}"',
            "[mqtt]", f"port = {self.broker}", 'client_id = "hg"', "telemetry_qos = 1",
            "[storage]", "flush_interval_ms = 500",
            "[api]", f'listen = "127.0.0.1:{api}"',
            "[[api.token]]", 'name = "bench"', 'role = "operator"', 'token_env = "HG_TOKEN"',
        ]
        if cluster:
            eps = ", ".join(f'"http://127.0.0.1:{p}"' for p in self.etcd_ports)
            lines += ["[cluster]", f'name = "{name}"', f"etcd_endpoints = [{eps}]",
                      f"partitions = {PARTITIONS}", "lease_ttl_s = 10"]
        for i in self.ids:
            lines += ["[[station]]", f'id = "{i}"']
        with open(f"{self.work}/{name}.toml", "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_instance(self, name):
        self.start(name, [f"{BIN}/heatgrid", "run", "--config", f"{self.work}/{name}.toml"])
        wait_port(self.api[name], f"instance {name}")

    def get(self, name, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.api[name]}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return json.load(r)
        except Exception:
            return None

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def signal(self, name, sig):
        self.procs[name].send_signal(sig)

    def reap(self, name, timeout=20):
        try:
            self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            self.procs[name].kill()
            self.procs[name].wait()

    def stop(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Commands:
    """Every command published to a station: station -> [(t, epoch, seq)]."""

    def __init__(self, port):
        self.lock = threading.Lock()
        self.accepted = {}
        self.last = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        c.on_connect = lambda cl, *_: (cl.subscribe("heating/station/+/command", qos=0))
        c.on_message = self.on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def on_message(self, _c, _u, msg):
        try:
            v = json.loads(msg.payload)
        except ValueError:
            return
        station = msg.topic.split("/")[2]
        with self.lock:
            self.accepted.setdefault(station, []).append(
                (time.time(), v.get("epoch", 0), v.get("seq", 0)))

    def first_new_epoch_after(self, stations, t0, old_epochs):
        """Per station, the first command after t0 with an epoch above the old one."""
        out = {}
        with self.lock:
            for s in stations:
                for t, e, _ in self.accepted.get(s, []):
                    if t >= t0 and e > old_epochs.get(s, 0):
                        out[s] = t
                        break
        return out

    def epoch_now(self, stations):
        with self.lock:
            return {s: (self.accepted.get(s) or [(0, 0, 0)])[-1][1] for s in stations}


def partition_of(station):
    h = 0xcbf29ce484222325
    for b in station.encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % PARTITIONS


def led(rig, name):
    v = rig.get(name, "/api/v1/cluster")
    return {int(p) for p in (v or {}).get("led", {})}


def settled(rig, timeout=90):
    """Waits until every partition has a leader among the live instances and each live
    instance leads some."""
    deadline = time.time() + timeout
    leads = {}
    while time.time() < deadline:
        names = [n for n in rig.names if rig.alive(n)]
        leads = {n: led(rig, n) for n in names}
        if all(leads.values()) and len(set().union(*leads.values())) == PARTITIONS:
            return True
        time.sleep(0.5)
    print(f"not settled: partitions led per instance {({n: len(p) for n, p in leads.items()})}; "
          f"logs in {rig.work}", flush=True)
    return False


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def takeover(kills, terms):
    work = tempfile.mkdtemp(prefix="heatgrid-cluster-bench-")
    rig = Rig(work)
    cmds = Commands(rig.broker)
    try:
        if not settled(rig):
            raise SystemExit("the cluster did not settle")
        time.sleep(10)
        results = {"SIGKILL": [], "SIGTERM": []}
        plan = ["SIGKILL"] * kills + ["SIGTERM"] * terms
        for k, how in enumerate(plan):
            victim = rig.names[k % len(rig.names)]
            parts = led(rig, victim)
            stations = [s for s in rig.ids if partition_of(s) in parts]
            old = cmds.epoch_now(stations)
            t0 = time.time()
            rig.signal(victim, signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
            others = [n for n in rig.names if n != victim]
            lead_at = None
            deadline = t0 + 60
            while time.time() < deadline:
                now_led = set().union(*(led(rig, n) for n in others))
                if lead_at is None and parts <= now_led:
                    lead_at = time.time()
                firsts = cmds.first_new_epoch_after(stations, t0, old)
                if lead_at and len(firsts) == len(stations):
                    break
                time.sleep(0.1)
            firsts = cmds.first_new_epoch_after(stations, t0, old)
            worst = max(firsts.values()) - t0 if len(firsts) == len(stations) else None
            results[how].append((lead_at - t0 if lead_at else None, worst, len(parts)))
            print(f"{how} #{k + 1} {victim}: {len(parts)} partitions, lead after "
                  f"{(lead_at - t0) if lead_at else float('nan'):.2f} s, every station commanded "
                  f"after {worst if worst is not None else float('nan'):.2f} s", flush=True)
            rig.reap(victim)
            rig.start_instance(victim)
            if not settled(rig):
                raise SystemExit("the cluster did not settle after a restart")
            time.sleep(6)
        for how, rows in results.items():
            leads = [r[0] for r in rows if r[0] is not None]
            worst = [r[1] for r in rows if r[1] is not None]
            if not rows:
                continue
            print(f"\n{how}: {len(rows)} runs, {len(rows) - len(worst)} without a full result")
            if leads:
                print(f"  lead taken over   p50 {pct(leads, .5):.2f} s  p99 {pct(leads, .99):.2f} s  max {max(leads):.2f} s")
            if worst:
                print(f"  all commanded     p50 {pct(worst, .5):.2f} s  p99 {pct(worst, .99):.2f} s  max {max(worst):.2f} s")
    finally:
        rig.stop()
        if not os.environ.get("BENCH_KEEP"):
            subprocess.run(["rm", "-rf", work])


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def p99_us(rig, name, key="heatgrid_control_latency_seconds"):
    """The 99th percentile of a Prometheus histogram at /metrics (its bucket's upper bound), µs."""
    req = urllib.request.Request(f"http://127.0.0.1:{rig.api[name]}/metrics",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    buckets = []
    with urllib.request.urlopen(req, timeout=3) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(key + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    total = buckets[-1][1]
    return next(le for le, n in buckets if n >= 0.99 * total) * 1e6


def cpu(seconds):
    global CONTROL_ON
    CONTROL_ON = "telemetry"
    hz = os.sysconf("SC_CLK_TCK")
    for label, n, cluster in [("one instance, no cluster", 1, False),
                              ("three instances, cluster", 3, True)]:
        work = tempfile.mkdtemp(prefix="heatgrid-cluster-cpu-")
        rig = Rig(work, instances=n, cluster=cluster)
        try:
            if cluster and not settled(rig):
                raise SystemExit("the cluster did not settle")
            time.sleep(15)
            pids = {name: rig.procs[name].pid for name in rig.names}
            before = {name: cpu_ticks(p) for name, p in pids.items()}
            time.sleep(seconds)
            used = {name: (cpu_ticks(p) - before[name]) / hz for name, p in pids.items()}
            p99 = {name: p99_us(rig, name) for name in rig.names}
            total = sum(used.values())
            print(f"{label}: {STATIONS} stations, total CPU {100 * total / seconds:.1f} % of one core "
                  f"over {seconds} s; per instance: " +
                  ", ".join(f"{k} {100 * v / seconds:.1f} % (p99 reading→command {p99[k]:.0f} µs)"
                            for k, v in used.items()), flush=True)
        finally:
            rig.stop()
            subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "takeover"
    if what == "takeover":
        takeover(int(sys.argv[2]) if len(sys.argv) > 2 else 20,
                 int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    elif what == "cpu":
        cpu(int(sys.argv[2]) if len(sys.argv) > 2 else 60)
    else:
        raise SystemExit(__doc__)

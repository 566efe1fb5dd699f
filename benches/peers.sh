# Sourced by the benchmark scripts: starts VictoriaMetrics and mosquitto on free loopback
# ports and stops everything in `pids` (last started first) and removes `tmp` on exit.
# Sets: tmp, pids, vm_port, mq_port; free_port is available to the caller.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
pids=()
cleanup() { for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
vm_port=$(free_port); mq_port=$(free_port)
# latencyOffset 0: points are queryable as soon as they are written (stored-vs-sent counts).
# VM_PREFIX: a command prefix for the database, e.g. `chrt -i 0` (run it at idle CPU priority).
${VM_PREFIX:-} victoria-metrics -storageDataPath="$tmp/vm" -httpListenAddr="127.0.0.1:$vm_port" \
  -loggerLevel=ERROR -search.latencyOffset=0s >/dev/null 2>&1 &
pids+=($!)
# stack-notes: no queue limit (the default 1,000 drops QoS 1 for a slow subscriber), no Nagle.
cat > "$tmp/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
CONF
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$vm_port/health" >/dev/null 2>&1 && break; sleep 0.1; done

"""A heat-exchange station emulator written independently of heatgrid.

It knows only the MQTT contract (telemetry out, commands in), not heatgrid's code: a crude
first-order plant whose secondary supply temperature follows the primary valve position. Used
by the integration tests to show that an outside implementation is controlled to its setpoint
and that its points are stored. Prints a JSON summary on exit.

--format picks what it speaks:
  native  the contract (heating/station/ID/telemetry, …/command)
  acme    a vendor gateway's nested JSON on acme/gw1/ID/data: temperatures in K, volume flow
          in l/h, power in W, energy in MWh, actuator positions as fractions, time in Unix
          seconds; commands on acme/gw1/ID/set as {"setpoint": {"flow_temp_k"}, "valve":
          {"position"}, "pump": {"speed"}, "id", "validity_s"} in the same units
  bridge  a heat-meter bridge: one value per topic, bridge/station/ID/tSupply, tReturn, flow
          (l/h), valve, pump, as plain text; commands on bridge/station/ID/cmd as
          {"valvePct", "pumpPct", "seq", "validFor"}
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--id", default="peer-01")
    ap.add_argument("--prefix", default="heating")
    ap.add_argument("--period", type=float, default=0.5, help="telemetry period, s")
    ap.add_argument("--duration", type=float, default=60.0, help="longest run time, s")
    ap.add_argument("--format", choices=["native", "acme", "bridge"], default="native")
    args = ap.parse_args()
    command_topic = {
        "native": f"{args.prefix}/station/{args.id}/command",
        "acme": f"acme/gw1/{args.id}/set",
        "bridge": f"bridge/station/{args.id}/cmd",
    }[args.format]

    lock = threading.Lock()
    state = {
        "supply": 48.0,  # degC (steady state of the local fallback)
        "valve": 40.0,  # % (actuator position)
        "pump": 70.0,  # %
        "target_valve": 40.0,
        "target_pump": 70.0,
        "valid_until": 0.0,
        "last_seq": 0,
        "commands": 0,
        "refused": 0,
        "published": 0,
    }

    def on_connect(client, userdata, flags, reason_code, properties=None):
        client.subscribe(command_topic, qos=1)

    def parse(cmd):
        if args.format == "acme":
            return (int(cmd["id"]), 100 * float(cmd["valve"]["position"]),
                    100 * float(cmd["pump"]["speed"]), float(cmd["validity_s"]))
        if args.format == "bridge":
            return (int(cmd["seq"]), float(cmd["valvePct"]), float(cmd["pumpPct"]),
                    float(cmd["validFor"]))
        return (int(cmd["seq"]), float(cmd["valve_pct"]), float(cmd["pump_pct"]),
                float(cmd["valid_for_s"]))

    def on_message(client, userdata, msg):
        try:
            seq, valve, pump, valid = parse(json.loads(msg.payload))
        except (ValueError, KeyError, TypeError):
            with lock:
                state["refused"] += 1
            return
        with lock:
            if seq <= state["last_seq"]:
                state["refused"] += 1
                return
            state["last_seq"] = seq
            state["commands"] += 1
            state["target_valve"] = min(max(valve, 0.0), 100.0)
            state["target_pump"] = min(max(pump, 0.0), 100.0)
            state["valid_until"] = time.time() + valid

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"py-{args.id}")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.loop_start()

    # The test ends the run early by closing our stdin.
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    def publish(client, now, flow):
        """One reading in the chosen format; True if every message of it was queued."""
        supply, ret = state["supply"], state["supply"] - 12.0
        if args.format == "acme":
            payload = {
                "time": round(now, 3),
                "flow": {"temperature_k": round(supply + 273.15, 3), "volume_lh": round(flow * 1000, 1)},
                "return": {"temperature_k": round(ret + 273.15, 3)},
                "meter": {"power_w": round(1163 * flow * 12.0, 1), "energy_mwh": 1234.5},
                "actuators": {"valve": round(state["valve"] / 100, 4), "pump": round(state["pump"] / 100, 4)},
                "gateway": {"firmware": "2.1.7", "rssi_dbm": -61},
            }
            topics = [(f"acme/gw1/{args.id}/data", json.dumps(payload))]
        elif args.format == "bridge":
            base = f"bridge/station/{args.id}"
            topics = [
                (f"{base}/valve", f"{state['valve']:.2f}"),
                (f"{base}/pump", f"{state['pump']:.2f}"),
                (f"{base}/uptime", "86400"),  # not mapped: ignored by the engine
                (f"{base}/tSupply", f"{supply:.3f}"),
                (f"{base}/tReturn", f"{ret:.3f}"),
                (f"{base}/flow", f"{flow * 1000:.1f}"),
            ]
        else:
            payload = {
                "ts": int(now * 1000),
                "supply_temp_c": round(supply, 3),
                "return_temp_c": round(ret, 3),
                "flow_m3h": round(flow, 2),
                "heated_area_m2": 80000,
                "valve_pct": round(state["valve"], 2),
                "pump_pct": round(state["pump"], 2),
            }
            topics = [(f"{args.prefix}/station/{args.id}/telemetry", json.dumps(payload))]
        return all(client.publish(t, p, qos=1).rc == mqtt.MQTT_ERR_SUCCESS for t, p in topics)

    tau = 10.0  # s, plant time constant
    step = 0.05
    end = time.time() + args.duration
    next_pub = time.time()
    while time.time() < end and not stop.is_set():
        now = time.time()
        with lock:
            if now > state["valid_until"]:
                # Local fallback: hold a fixed valve position.
                state["target_valve"] = 40.0
            # Actuator: 100 % in 30 s.
            dv = state["target_valve"] - state["valve"]
            state["valve"] += max(-step * 100 / 30, min(step * 100 / 30, dv))
            state["pump"] = state["target_pump"]
            target = 30.0 + 0.45 * state["valve"]
            state["supply"] += (target - state["supply"]) * step / tau
            if now >= next_pub:
                next_pub += args.period
                flow = 2.6 * state["pump"]
                sent = publish(client, now, flow)
                if sent:
                    state["published"] += 1
        time.sleep(step)

    client.loop_stop()
    client.disconnect()
    with lock:
        print(json.dumps({k: state[k] for k in ("published", "commands", "refused", "supply", "valve")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

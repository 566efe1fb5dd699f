#!/usr/bin/env python3
"""A load server for the OPC UA benchmark (benches/opcua.rs), built on asyncua: N stations of
ten Double variables each (ns of "urn:heatgrid:bench", s=ID.FIELD), every value changed and
stamped each --period seconds, so every monitored item notifies once a period.
Prints "ready" once serving."""
import argparse
import asyncio
import datetime
import math

from asyncua import Server, ua

FIELDS = {
    "supply_temp_c": 60.0, "return_temp_c": 42.0, "flow_m3h": 120.0, "heated_area_m2": 80000.0,
    "outdoor_temp_c": -2.0, "indoor_temp_c": 20.5, "valve_pct": 45.0, "pump_pct": 70.0,
    "heat_kw": 2500.0, "heat_energy_gj": 1000.0,
}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stations", type=int, default=500)
    ap.add_argument("--period", type=float, default=1.0)
    args = ap.parse_args()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/fleet")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:heatgrid:bench")
    nodes = []
    for i in range(args.stations):
        sid = f"opc-{i + 1:03d}"
        obj = await server.nodes.objects.add_object(idx, sid)
        for f, v in FIELDS.items():
            nodes.append((await obj.add_variable(ua.NodeId(f"{sid}.{f}", idx), f, v), f, v, i))
    async with server:
        print("ready", idx, flush=True)
        k = 0
        while True:
            k += 1
            now = datetime.datetime.now(datetime.timezone.utc)
            for var, f, v, i in nodes:
                x = v if f == "heated_area_m2" else v * (1.0 + 0.001 * math.sin(k + i))
                await var.write_value(ua.DataValue(ua.Variant(x, ua.VariantType.Double), SourceTimestamp=now))
            await asyncio.sleep(max(0.0, args.period - (datetime.datetime.now(datetime.timezone.utc) - now).total_seconds()))


if __name__ == "__main__":
    asyncio.run(main())

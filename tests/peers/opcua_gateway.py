#!/usr/bin/env python3
"""An OPC UA gateway in front of heatgrid's simulated PLCs, built on asyncua (an OPC UA server
we did not write) and pymodbus (a Modbus client we did not write).

Like the gateways station integrators install, it reads each station's PLC over Modbus TCP
(the simulator's register map, config/modbus/heatgrid-sim.toml) and serves the values as OPC
UA variables; a command written to its command variables is passed on to the PLC's holding
registers, (epoch, seq) last, which is when the simulated PLC takes it. So the values follow
the simulator's physics and the command nodes drive it.

Address space (namespace "urn:heatgrid:test-gateway"), per station ID:
  ns;s=ID.supply Double, ID.return Float, ID.flow Double, ID.area UInt32, ID.outdoor Double,
  ID.valve Double, ID.pump Double, ID.heat Double                      (read)
  ID.cmd.mode UInt16, ID.cmd.setpoint Double, ID.cmd.valve Double, ID.cmd.pump Double,
  ID.cmd.valid_for UInt16, ID.cmd.epoch UInt32, ID.cmd.seq UInt32      (written by the engine)

--stations ID=PORT,... : the PLCs (the simulator's Modbus ports).
--security none|sign_encrypt with --cert/--key (PEM): Basic256Sha256 Sign & Encrypt only.
--user NAME:PASSWORD: only that user may connect (anonymous refused).
--trust-client PEM: only the client (application instance) certificate in it is accepted.
--identity-cert PEM: only a user identified by the X.509 certificate in it may connect.
stdin lines "bad ID FIELD" / "good ID FIELD": serve that read variable with status
BadSensorFailure (value unchanged) or Good again.
Prints "ready" once serving, "WRITE ID seq=N epoch=E ..." per command passed on.
"""
import argparse
import asyncio
import datetime
import struct
import sys
import threading

from asyncua import Server, ua
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from pymodbus.client import AsyncModbusTcpClient

URI = "urn:heatgrid:test-gateway"
READS = [  # name, OPC UA type, input register, decoder
    ("supply", ua.VariantType.Double, 0, "i16c"),
    ("return", ua.VariantType.Float, 1, "i16c"),
    ("flow", ua.VariantType.Double, 2, "u32c"),
    ("area", ua.VariantType.UInt32, 4, "u32"),
    ("outdoor", ua.VariantType.Double, 6, "i16c"),
    ("valve", ua.VariantType.Double, 8, "u16c"),
    ("pump", ua.VariantType.Double, 9, "u16c"),
    ("heat", ua.VariantType.Double, 14, "f32"),
]
COMMANDS = [
    ("mode", ua.VariantType.UInt16, 0),
    ("setpoint", ua.VariantType.Double, 0.0),
    ("valve", ua.VariantType.Double, 0.0),
    ("pump", ua.VariantType.Double, 0.0),
    ("valid_for", ua.VariantType.UInt16, 0),
    ("epoch", ua.VariantType.UInt32, 0),
    ("seq", ua.VariantType.UInt32, 0),
]


def decode(words, at, how):
    w = words[at]
    if how == "i16c":
        return (w - 65536 if w >= 32768 else w) / 100.0
    if how == "u16c":
        return w / 100.0
    u32 = (words[at] << 16) | words[at + 1]
    if how == "u32c":
        return u32 / 100.0
    if how == "u32":
        return u32
    return struct.unpack(">f", struct.pack(">I", u32))[0]


class OnlyUser(UserManager):
    """Accepts one user with its password, or one X.509 identity certificate (DER)."""

    def __init__(self, name=None, password=None, cert_der=None):
        self.name, self.password, self.cert_der = name, password, cert_der

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if self.name is not None and username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        if self.cert_der is not None and certificate is not None:
            der = certificate if isinstance(certificate, (bytes, bytearray)) else certificate.public_bytes(serialization.Encoding.DER)
            if der == self.cert_der:
                return User(role=UserRole.User, name="certificate")
        return None


def der_of(pem_path):
    with open(pem_path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


class Station:
    def __init__(self, sid, port):
        self.id, self.port = sid, port
        self.client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
        self.reads, self.cmds = {}, {}
        self.last_seq = 0


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stations", required=True)
    ap.add_argument("--period", type=float, default=0.2)
    ap.add_argument("--security", choices=["none", "sign_encrypt"], default="none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--trust-client", help="PEM: the only client certificate accepted")
    ap.add_argument("--identity-cert", help="PEM: the only user identity accepted (an X.509 token)")
    args = ap.parse_args()

    server = Server()
    if args.user:
        name, password = args.user.split(":", 1)
        server = Server(user_manager=OnlyUser(name, password))
    elif args.identity_cert:
        server = Server(user_manager=OnlyUser(cert_der=der_of(args.identity_cert)))
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/gateway")
    server.set_server_name("heatgrid test gateway")
    await server.set_application_uri(URI)
    if args.security == "sign_encrypt":
        await server.load_certificate(args.cert)
        await server.load_private_key(args.key)
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if args.trust_client:
        trusted = der_of(args.trust_client)

        async def pinned(cert, app_description):
            if cert.public_bytes(serialization.Encoding.DER) != trusted:
                raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(pinned)
    if args.user:
        server.set_security_IDs(["Username"])
    elif args.identity_cert:
        server.set_security_IDs(["Basic256Sha256"])
    else:
        server.set_security_IDs(["Anonymous", "Username"])
    idx = await server.register_namespace(URI)

    stations = []
    for spec in args.stations.split(","):
        sid, port = spec.split("=")
        st = Station(sid, int(port))
        obj = await server.nodes.objects.add_object(idx, sid)
        for name, vt, _, _ in READS:
            st.reads[name] = await obj.add_variable(
                ua.NodeId(f"{sid}.{name}", idx), name, ua.Variant(0, vt))
        for name, vt, init in COMMANDS:
            var = await obj.add_variable(
                ua.NodeId(f"{sid}.cmd.{name}", idx), f"cmd.{name}", ua.Variant(init, vt))
            await var.set_writable()
            st.cmds[name] = var
        stations.append(st)

    bad = set()

    def read_stdin():
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("bad", "good"):
                (bad.add if parts[0] == "bad" else bad.discard)((parts[1], parts[2]))

    threading.Thread(target=read_stdin, daemon=True).start()

    async def serve(st):
        await st.client.connect()
        while True:
            try:
                if not st.client.connected:
                    await st.client.connect()
                r = await st.client.read_input_registers(0, count=18, slave=1)
                if not r.isError():
                    for name, vt, at, how in READS:
                        status = ua.StatusCode(ua.StatusCodes.BadSensorFailure) if (st.id, name) in bad else ua.StatusCode(ua.StatusCodes.Good)
                        dv = ua.DataValue(ua.Variant(decode(r.registers, at, how), vt), StatusCode=status,
                                          SourceTimestamp=datetime.datetime.now(datetime.timezone.utc))
                        await st.reads[name].write_value(dv)
                seq = await st.cmds["seq"].read_value()
                if seq != st.last_seq:
                    await forward(st, seq)
            except Exception as e:  # the PLC restarting: try again next period
                print("ERROR", st.id, repr(e), flush=True)
            await asyncio.sleep(args.period)

    async def forward(st, seq):
        c = {name: await st.cmds[name].read_value() for name, _, _ in COMMANDS}
        words = [c["mode"], int(round(c["setpoint"] * 100)) & 0xFFFF, int(round(c["valve"] * 100)),
                 int(round(c["pump"] * 100)), 0, 0, c["valid_for"]]
        await st.client.write_registers(0, words, slave=1)
        await st.client.write_registers(9, [c["epoch"] >> 16, c["epoch"] & 0xFFFF], slave=1)
        await st.client.write_registers(7, [seq >> 16, seq & 0xFFFF], slave=1)
        st.last_seq = seq
        print(f"WRITE {st.id} seq={seq} epoch={c['epoch']} valve={c['valve']} pump={c['pump']} mode={c['mode']}", flush=True)

    async with server:
        print("ready", idx, flush=True)
        await asyncio.gather(*(serve(st) for st in stations))


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/env python3
"""A PLC for heatgrid's Modbus interop test, built on pymodbus (an implementation we did not write).

Serves, on 127.0.0.1:PORT for any unit id, a register layout unlike heatgrid's default map
(addresses below are wire addresses; the test's map numbers them from 1):

  input   100  supply 52.4 °C   i16 x0.1
  input   101  return 39.8 °C   i16 x0.1
  input   102  outdoor -6.5 °C  i16 x0.1
  input   110  flow 240.5 m³/h  f32, low word first (CDAB)
  holding 120  area 100000 m²   u32, high word first
  holding 200… commands written by the engine
  discrete 3   pump running (1)
  coil 0       pump enable, written by the engine

Every write to the holding registers is printed as "WRITE <address> <word> ..." on stdout,
every write to a coil as "COIL <address> <0|1> ...".

--sparse: the input registers are a sparse store holding only the addresses above, so a read
spanning an address it does not hold is refused with exception 2 (illegal data address), as
some controllers do.
"""
import argparse
import asyncio
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusSparseDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncTcpServer


class LoggingBlock(ModbusSequentialDataBlock):
    def __init__(self, tag, address, values):
        super().__init__(address, values)
        self.tag = tag

    def setValues(self, address, values):
        super().setValues(address, values)
        if not isinstance(values, list):
            values = [values]
        print(self.tag, address, " ".join(str(int(v)) for v in values), flush=True)


def words_f32_cdab(x):
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [lo, hi]


def words_u32_abcd(x):
    return list(struct.unpack(">HH", struct.pack(">I", x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sparse", action="store_true")
    args = ap.parse_args()

    inputs = [0] * 300
    inputs[100] = 524
    inputs[101] = 398
    inputs[102] = (-65) & 0xFFFF
    inputs[110:112] = words_f32_cdab(240.5)
    holding = [0] * 300
    holding[120:122] = words_u32_abcd(100000)

    discrete = [0] * 10
    discrete[3] = 1
    if args.sparse:
        ir = ModbusSparseDataBlock({a: inputs[a] for a in (100, 101, 102, 110, 111)})
    else:
        ir = ModbusSequentialDataBlock(0, inputs)
    slave = ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, discrete),
        co=LoggingBlock("COIL", 0, [0] * 10),
        ir=ir,
        hr=LoggingBlock("WRITE", 0, holding),
        zero_mode=True,
    )
    context = ModbusServerContext(slaves=slave, single=True)
    print("READY", args.port, flush=True)
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", args.port)))


if __name__ == "__main__":
    sys.exit(main())

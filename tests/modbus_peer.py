"""A real Modbus/TCP server and client (pymodbus) on loopback, run as a separate process.

`python -m tests.modbus_peer PORT N` starts a pymodbus server on 127.0.0.1:PORT in a thread, then a
pymodbus client performs N rounds of reads and writes against it, and exits. Used by the live-capture
tests: the traffic is a real stack's, not crafted.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


def _serve(port: int, ready: threading.Event) -> None:
    # pymodbus >= 3.10: a block starts at 1-based address 1 (protocol address 0)
    block = ModbusSequentialDataBlock(1, list(range(200)))
    dev = ModbusDeviceContext(di=block, co=ModbusSequentialDataBlock(1, [0] * 200), hr=block, ir=block)
    ctx = ModbusServerContext(devices=dev, single=True)

    async def run() -> None:
        task = asyncio.create_task(StartAsyncTcpServer(context=ctx, address=("127.0.0.1", port)))
        await asyncio.sleep(0.5)
        ready.set()
        await task

    asyncio.run(run())


def main() -> None:
    port, rounds = int(sys.argv[1]), int(sys.argv[2])
    ready = threading.Event()
    threading.Thread(target=_serve, args=(port, ready), daemon=True).start()
    ready.wait(10)
    client = ModbusTcpClient("127.0.0.1", port=port)
    assert client.connect(), "client could not connect"
    for i in range(rounds):
        client.read_holding_registers(10, count=5)
        client.write_register(20, 1000 + i)
        client.read_coils(0, count=12)
        client.write_coil(3, bool(i % 2))
        time.sleep(0.01)
    client.close()
    time.sleep(0.3)


if __name__ == "__main__":
    main()

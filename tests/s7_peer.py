"""A real S7comm stack on loopback for the live test: python-snap7's server and client (pure Python).

`python -m tests.s7_peer PORT ROUNDS`: a server with DB10 on PORT, a client that connects (COTP,
setup communication), writes DB10.DBW0 = round number and reads DB10.DBB0..3 back ROUNDS times,
then reads the order code (SZL 0x0011) and the component identification (SZL 0x001C), stops the
PLC and hot-restarts it (PI service P_PROGRAM), and disconnects. Prints one line per step.
"""

from __future__ import annotations

import sys
import time


def main(port: int, rounds: int) -> None:
    import snap7
    from snap7.type import SrvArea

    srv = snap7.Server()
    srv.register_area(SrvArea.DB, 10, bytearray(32))
    srv.start(tcp_port=port)
    try:
        time.sleep(0.3)
        c = snap7.Client()
        c.connect("127.0.0.1", 0, 1, port)
        for i in range(rounds):
            c.db_write(10, 0, bytearray([0, i + 1]))
            print(i, bytes(c.db_read(10, 0, 4)).hex(), flush=True)
            time.sleep(0.05)
        print(c.get_order_code().OrderCode.decode(), flush=True)
        print(c.get_cpu_info().ModuleTypeName.decode(), flush=True)
        print("stop", c.plc_stop(), "start", c.plc_hot_start(), flush=True)
        c.disconnect()
    finally:
        srv.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

"""A real IEC 60870-5-104 stack on loopback for the live test: c104's server and client (lib60870).

`python -m tests.iec104_peer PORT`: a server (common address 47) with a measured value M_ME_NC_1
at IOA 11, a single point M_SP_NA_1 at IOA 12 and a single command C_SC_NA_1 at IOA 21; a client
that connects, starts data transfer (STARTDT), runs a station interrogation (CA 47), synchronises
the clock through the global address 0xFFFF, sends the single command (direct execute, ON) and
disconnects. Prints one line per step with its result.
"""

import sys
import time


def main(port: int) -> None:
    import c104

    server = c104.Server(ip="127.0.0.1", port=port)
    st = server.add_station(common_address=47)
    st.add_point(io_address=11, type=c104.Type.M_ME_NC_1)
    st.add_point(io_address=12, type=c104.Type.M_SP_NA_1)
    cmd = st.add_point(io_address=21, type=c104.Type.C_SC_NA_1)

    def on_command(
        point: c104.Point, previous_info: c104.Information, message: c104.IncomingMessage
    ) -> c104.ResponseState:
        return c104.ResponseState.SUCCESS

    cmd.on_receive(callable=on_command)
    server.start()
    try:
        client = c104.Client()
        conn = client.add_connection(ip="127.0.0.1", port=port, init=c104.Init.NONE)
        cst = conn.add_station(common_address=47)
        cst.add_point(io_address=11, type=c104.Type.M_ME_NC_1)
        cst.add_point(io_address=12, type=c104.Type.M_SP_NA_1)
        ccmd = cst.add_point(io_address=21, type=c104.Type.C_SC_NA_1)
        client.start()
        # Steps one at a time, each waiting for its confirmation. (Polling conn.state in a loop while the
        # client thread delivers data can deadlock on the GIL, and Init.ALL races the command under load.)
        time.sleep(0.5)
        print("startdt", conn.unmute(), flush=True)
        print("interrogation", conn.interrogation(common_address=47), flush=True)
        time.sleep(0.2)
        print("clock_sync", conn.clock_sync(common_address=65535), flush=True)  # global address
        time.sleep(0.2)
        ccmd.value = True
        print("command", ccmd.transmit(cause=c104.Cot.ACTIVATION), flush=True)
        time.sleep(0.3)
        client.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]))

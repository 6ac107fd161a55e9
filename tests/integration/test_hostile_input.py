"""Bad input never takes a daemon down (issue: foundation; DESIGN §5 limits):
random bytes, hostile frame lengths, truncated frames, floods of protocol
lines and over-long lines on master's control socket and authd's three
sockets, each followed by a half-close. Afterwards master and authd are the
same processes and still answer."""

import os
import socket
import struct
import time

from harness import DovecotAuthClient, Instance, check

PAYLOADS = (
    os.urandom(5000),
    struct.pack(">I", 0xFFFFFFFF) + b"\x01",      # frame length past every limit
    struct.pack(">I", 9) + b"\x01" + struct.pack(">I", 0xFFFFFFF0),  # attribute longer than its frame
    b"\x00" * 3,                                    # truncated length
    b"AUTH\t1\n" * 1000,                            # protocol lines before VERSION
    b"VERSION\t1\t0\n" + b"AUTH\t1\tPLAIN\tservice=smtp\tresp=%%%\n" * 50,
    b"x" * 200000,                                  # one over-long line
)


def main():
    with Instance() as instance:
        instance.cli("domain", "add", "example.test", check_rc=0)
        instance.cli("user", "add", "a@example.test", "--password-stdin", input="pw\n", check_rc=0)
        instance.start()
        [authd_pid] = instance.pids("authd")
        sockets = (instance.control_socket, instance.lookup_socket,
                   os.path.join(instance.runtime, "auth-admin"), instance.sasl_socket)
        for path in sockets:
            for payload in PAYLOADS:
                client = socket.socket(socket.AF_UNIX)
                client.settimeout(5)
                client.connect(path)
                try:
                    client.sendall(payload)
                    client.shutdown(socket.SHUT_WR)
                    client.recv(100)
                except OSError:
                    pass
                client.close()
        time.sleep(0.5)
        check(instance.master.poll() is None, "master survives garbage on every socket")
        check(instance.pids("authd") == [authd_pid], "authd is the same process: it never crashed")
        client = DovecotAuthClient(instance.sasl_socket)
        check(client.auth_plain("a@example.test", "pw")[0] == "OK", "authd still authenticates")
        client.close()
        check("bad frame" in instance.log(), "malformed frames are logged")


if __name__ == "__main__":
    main()
    print("1 passed, 0 failed")

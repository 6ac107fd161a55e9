"""pop3d's connection limits (issue 4, DESIGN §5: every input has a limit):
client_connection_limit per client address and session_limit per process,
both answered "-ERR [SYS/TEMP]" (RFC 3206) at the greeting; and slots given
back by every way a connection can end, including the ones that never get
as far as a POP3 command: a client that closes port 995 before or during
the TLS handshake, one that closes right after STLS, and one that connects
to 995 and stays silent (login_idle_timeout must close it too, and SIGTERM
must not wait for it)."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import MailInstance, RawPOP3, check, sanitizer_clean, tls_context, wait_for  # noqa: E402

PER_ADDRESS = 3
SESSIONS = 5


def connect(port, source="127.0.0.1"):
    """A RawPOP3 from `source` (any 127/8 address is local) and its greeting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    raw = RawPOP3(sock)
    try:
        return raw, raw.greeting()
    except (ConnectionError, OSError) as error:
        return raw, "closed: %r" % error


def slots_free(inst, count=PER_ADDRESS):
    """True when `count` sessions from 127.0.0.1 all get +OK right now."""
    opened = [connect(inst.pop3_port) for _ in range(count)]
    ok = all(greeting.startswith("+OK") for _, greeting in opened)
    for raw, _ in opened:
        raw.close()
    time.sleep(0.5)  # let the server see these closes before the caller opens more
    return ok


def test_client_connection_limit(inst):
    opened = [connect(inst.pop3_port) for _ in range(PER_ADDRESS)]
    check(all(g.startswith("+OK") for _, g in opened), "%d sessions from 127.0.0.1" % PER_ADDRESS)
    over, greeting = connect(inst.pop3_port)
    check(greeting.startswith("-ERR [SYS/TEMP]"), "one more from 127.0.0.1: -ERR [SYS/TEMP] (%s)" % greeting)
    check(over.closed(), "and closed")
    over.close()
    other, greeting = connect(inst.pop3_port, "127.0.0.2")
    check(greeting.startswith("+OK"), "another client address is not limited by 127.0.0.1's sessions")
    opened[0][0].close()
    check(wait_for(lambda: slots_free(inst, 1), 10), "a closed session gives its slot back")
    for raw, _ in opened[1:]:
        raw.close()
    other.close()


def test_session_limit(inst):
    opened = [connect(inst.pop3_port, "127.0.0.%d" % (2 + n // 2)) for n in range(SESSIONS)]
    check(all(g.startswith("+OK") for _, g in opened), "%d sessions from 3 addresses" % SESSIONS)
    over, greeting = connect(inst.pop3_port, "127.0.0.9")
    check(greeting.startswith("-ERR [SYS/TEMP]"), "session_limit reached: -ERR [SYS/TEMP] (%s)" % greeting)
    over.close()
    for raw, _ in opened:
        raw.close()
    check(wait_for(lambda: slots_free(inst), 10), "all slots free again after those sessions closed")


def test_early_tls_ends(inst):
    # Port 995: TCP connect and close before any TLS byte.
    for _ in range(PER_ADDRESS):
        socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=10).close()
    check(wait_for(lambda: slots_free(inst), 10),
          "connections to 995 closed before the TLS handshake give their slots back")
    # Port 995: half a ClientHello, then close.
    for _ in range(PER_ADDRESS):
        sock = socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=10)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        sock.close()
    check(wait_for(lambda: slots_free(inst), 10), "connections closed in the middle of the TLS handshake too")
    # Port 110: STLS answered, then close without a handshake.
    for _ in range(PER_ADDRESS):
        raw, _ = connect(inst.pop3_port)
        raw.cmd("STLS")
        raw.close()
    check(wait_for(lambda: slots_free(inst), 10), "connections closed right after STLS too")
    # Port 995: a full handshake and the greeting, then close.
    for _ in range(PER_ADDRESS):
        tls = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=10),
                                        server_hostname="mail.example.test")
        tls.recv(100)
        tls.close()
    check(wait_for(lambda: slots_free(inst), 10), "and TLS sessions closed after the greeting")


def test_silent_tls_client(inst):
    sock = socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=20)
    started = time.monotonic()
    try:
        data = sock.recv(100)
        closed = data == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    sock.close()
    check(closed, "a client silent on 995 (no TLS handshake) is disconnected by login_idle_timeout = 3s "
          "(waited %.1f s)" % (time.monotonic() - started))
    check(wait_for(lambda: slots_free(inst), 10), "and its slot is free")


def main():
    config = "client_connection_limit = %d\nsession_limit = %d\nlogin_idle_timeout = 3s" % (PER_ADDRESS, SESSIONS)
    with MailInstance(pop3=True, pop3_config=config) as inst:
        inst.start()
        # The harness probed both ports (connect, close) to see them listen.
        check(wait_for(lambda: slots_free(inst), 10),
              "all %d per-address slots free after start (the start-up probes of 110 and 995 were released)"
              % PER_ADDRESS)
        test_client_connection_limit(inst)
        test_session_limit(inst)
        test_early_tls_ends(inst)
        test_silent_tls_client(inst)
        # SIGTERM with a 995 connection that never started TLS: pop3d must
        # still stop by itself (and so run its leak check), not be SIGKILLed
        # by master after service_stop_timeout.
        waiting = socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=10)
        inst.stop()
        waiting.close()
        check("service=pop3d did not stop" not in inst.log() and "service=pop3d pid" in inst.log(),
              "pop3d stops on SIGTERM by itself with a pre-handshake connection open")
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    print("all pop3 limit checks passed")


if __name__ == "__main__":
    main()

"""authd's SASL socket replayed byte for byte against the exchange Postfix's
xsasl_dovecot_server client performs (DESIGN §4: a Postfix with
smtpd_sasl_type = dovecot can use facteur), without master.

What Postfix does (src/xsasl/xsasl_dovecot_server.c):
  connect:  sends "VERSION\\t1\\t0\\nCPID\\t<pid>\\n", reads lines until "DONE";
            keeps "MECH\\t<name>[\\t<flags>]" lines, skips "private" ones,
            ignores SPID/CUID/COOKIE; a VERSION with another major aborts.
  first:    "AUTH\\t<n>\\t<mech>\\tservice=smtp\\tnologin\\tlip=<a>\\trip=<a>"
            [+ "\\tsecured" under TLS] [+ "\\tresp=<base64>"] "\\n", with n
            counting up per connection from 1;
  next:     "CONT\\t<n>\\t<base64>\\n";
  replies:  "OK\\t<n>[\\tuser=<name>]", "CONT\\t<n>\\t<base64>",
            "FAIL\\t<n>[\\tuser=<name>][\\treason=<text>]" - a reply whose id is
            not the last request's is skipped.
Each reply below is compared with the exact bytes Postfix parses.
"""

import base64
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_authd_alone import AuthdAlone  # noqa: E402

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


class PostfixReplay:
    """One Postfix smtpd's connection to the auth server, as raw bytes."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.buffer = b""
        self.request_id = 0

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("authd closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"

    def handshake(self):
        self.send(b"VERSION\t1\t0\nCPID\t%d\n" % os.getpid())
        lines = []
        while not lines or lines[-1] != b"DONE\n":
            lines.append(self.line())
        return lines

    def auth(self, mechanism, initial=None, secured=True, lip=b"127.0.0.1", rip=b"127.0.0.1"):
        self.request_id += 1
        line = b"AUTH\t%d\t%s\tservice=smtp\tnologin\tlip=%s\trip=%s" % (self.request_id, mechanism, lip, rip)
        if secured:
            line += b"\tsecured"
        if initial is not None:
            line += b"\tresp=" + base64.b64encode(initial)
        self.send(line + b"\n")
        return self.line()

    def cont(self, data):
        self.send(b"CONT\t%d\t%s\n" % (self.request_id, base64.b64encode(data)))
        return self.line()


def main():
    with AuthdAlone() as authd:
        authd.start()
        authd.add_domain("example.test")
        authd.add_user("alice@example.test", "alice-secret")

        postfix = PostfixReplay(authd.sasl_socket)
        greeting = postfix.handshake()
        check(greeting[0] == b"VERSION\t1\t2\n", f"greeting starts with VERSION 1.2: {greeting[0]!r}")
        check(greeting[1:3] == [b"MECH\tPLAIN\tplaintext\n", b"MECH\tLOGIN\tplaintext\n"],
              f"PLAIN and LOGIN announced as plaintext: {greeting[1:3]!r}")
        check(greeting[3] == b"SPID\t%d\n" % authd.pid, f"SPID is authd's pid: {greeting[3]!r}")
        check(greeting[4].startswith(b"CUID\t") and greeting[4][5:-1].isdigit(), f"CUID: {greeting[4]!r}")
        cookie = greeting[5][len(b"COOKIE\t"):-1]
        check(greeting[5].startswith(b"COOKIE\t") and len(cookie) == 32
              and all(c in b"0123456789abcdef" for c in cookie), f"COOKIE is 32 hex digits: {greeting[5]!r}")
        check(greeting[6:] == [b"DONE\n"], "DONE ends the greeting")

        reply = postfix.auth(b"PLAIN", b"\0alice@example.test\0alice-secret")
        check(reply == b"OK\t1\tuser=alice@example.test\n", f"AUTH PLAIN with resp=: {reply!r}")

        reply = postfix.auth(b"PLAIN", b"\0Alice@Example.TEST\0alice-secret", secured=False)
        check(reply == b"OK\t2\tuser=alice@example.test\n",
              f"without TLS (no secured), the canonical lowercase name comes back: {reply!r}")

        reply = postfix.auth(b"PLAIN", b"\0alice@example.test\0wrong")
        check(reply == b"FAIL\t3\tuser=alice@example.test\treason=Authentication failed\n",
              f"wrong password: {reply!r}")

        reply = postfix.auth(b"PLAIN", b"\0nobody@example.test\0whatever")
        check(reply == b"FAIL\t4\tuser=nobody@example.test\treason=Authentication failed\n",
              f"unknown user gets the same FAIL as a wrong password: {reply!r}")

        # AUTH LOGIN as Postfix relays it: no initial response, two CONT steps.
        reply = postfix.auth(b"LOGIN")
        check(reply == b"CONT\t5\tVXNlcm5hbWU6\n", f"LOGIN asks for the user name: {reply!r}")
        reply = postfix.cont(b"alice@example.test")
        check(reply == b"CONT\t5\tUGFzc3dvcmQ6\n", f"then for the password: {reply!r}")
        reply = postfix.cont(b"alice-secret")
        check(reply == b"OK\t5\tuser=alice@example.test\n", f"LOGIN succeeds: {reply!r}")

        reply = postfix.auth(b"LOGIN", b"alice@example.test")
        check(reply == b"CONT\t6\tUGFzc3dvcmQ6\n", f"LOGIN with the user name as initial response: {reply!r}")
        reply = postfix.cont(b"nope")
        check(reply == b"FAIL\t6\tuser=alice@example.test\treason=Authentication failed\n",
              f"LOGIN with a wrong password: {reply!r}")

        # Postfix filters mechanisms itself, but a client may name any.
        reply = postfix.auth(b"CRAM-MD5")
        check(reply == b"FAIL\t7\treason=Unsupported authentication mechanism\n", f"unknown mechanism: {reply!r}")

        # Postfix leaves lip empty when it cannot tell its own address.
        reply = postfix.auth(b"PLAIN", b"\0alice@example.test\0alice-secret", lip=b"", rip=b"::1")
        check(reply == b"OK\t8\tuser=alice@example.test\n", f"empty lip=, IPv6 rip=: {reply!r}")

        # A second smtpd process opens its own connection, counting from 1.
        other = PostfixReplay(authd.sasl_socket)
        other_greeting = other.handshake()
        check(other_greeting[4] != greeting[4], "each connection has its own CUID")
        reply = other.auth(b"PLAIN", b"\0alice@example.test\0alice-secret", secured=False)
        check(reply == b"OK\t1\tuser=alice@example.test\n", f"second connection: {reply!r}")
        other.sock.close()
        postfix.sock.close()

        check("service=smtp rip=127.0.0.1 user=<alice@example.test> mech=PLAIN result=ok" in authd.log(),
              "authd logs each success with service, rip, user and mechanism")
        check("alice-secret" not in authd.log(), "no password in the log")
        code = authd.stop()
        check(code == 0, f"authd exits 0 on SIGTERM (got {code})")

    if failures:
        print(f"{len(failures)} failed", file=sys.stderr)
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()

"""pop3d with TLS and with curl (issue 4): STLS (RFC 2595) with poplib,
implicit TLS (RFC 8314) with poplib.POP3_SSL, curl's pop3:// (listing and
retrieval), pop3:// --ssl-reqd (STLS) and pop3s:// checked against the
instance certificate, every message compared byte for byte with what was
sent; CAPA before and after STLS; and plaintext_auth = no: USER/PASS and
AUTH PLAIN refused before STLS, accepted after it."""

import base64
import os
import poplib
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, sanitizer_clean, smtp_send,  # noqa: E402
                     split_served_trace, tls_context)

ALICE, ALICE_PW = "alice@example.test", "alice-secret"
SENT = [
    b"Subject: over TLS\r\nMessage-ID: <tls-1@example.test>\r\n\r\n.dot first\r\nFrom here\r\n"
    b"caf\xc3\xa9\r\n.\r\nend\r\n",
    b"Subject: second\r\nMessage-ID: <tls-2@example.test>\r\n\r\n" + b"z" * 900 + b"\r\n" * 3 + b"tail",
]


def expected(index):
    return SENT[index] if SENT[index].endswith(b"\r\n") else SENT[index] + b"\r\n"


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


def body_of(data, what):
    parts = split_served_trace(data)
    if parts is None:
        fail(what + ": no trace header lines at the top: %r" % data[:200])
    return parts[1]


def check_all_messages(pop, what):
    count, total = pop.stat()
    check(count == len(SENT), what + ": STAT counts %d messages" % len(SENT))
    sizes = [int(e.split()[1]) for e in pop.list()[1]]
    check(sum(sizes) == total, what + ": STAT size = sum of LIST sizes")
    for number in range(1, count + 1):
        data = joined(pop.retr(number)[1])
        check(len(data) == sizes[number - 1], what + ": RETR %d octets = LIST size" % number)
        check(body_of(data, what) == expected(number - 1),
              what + ": message %d byte for byte as sent" % number)


def curl(*args, timeout=60):
    result = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr.decode(errors="replace")


def test_stls(inst):
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    check("STLS" in pop.capa(), "CAPA lists STLS on the plain port")
    check(pop.stls(context=tls_context()).startswith(b"+OK"), "STLS +OK, TLS negotiated (poplib.stls)")
    check(isinstance(pop.sock, ssl.SSLSocket) and pop.sock.version() in ("TLSv1.2", "TLSv1.3"),
          "the session is now TLS 1.2+")
    capa = pop.capa()
    check("STLS" not in capa, "CAPA after STLS no longer lists STLS (RFC 2595 §4)")
    check("USER" in capa and "PLAIN" in capa.get("SASL", []), "CAPA after STLS lists USER and SASL PLAIN")
    pop.user(ALICE)
    check(pop.pass_(ALICE_PW).startswith(b"+OK"), "USER/PASS over STLS")
    check_all_messages(pop, "STLS")
    pop.quit()

    # STLS twice, and STLS after login, are refused.
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("STLS").startswith("+OK"), "raw STLS +OK")
    tls = tls_context().wrap_socket(raw.sock, server_hostname="mail.example.test")
    raw2 = RawPOP3(tls)
    check(raw2.cmd("STLS").startswith("-ERR"), "a second STLS: -ERR")
    check(raw2.login(ALICE, ALICE_PW).startswith("+OK"), "login after STLS")
    check(raw2.cmd("STLS").startswith("-ERR"), "STLS in TRANSACTION state: -ERR")
    raw2.cmd("QUIT")
    raw2.close()

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    raw.login(ALICE, ALICE_PW)
    check(raw.cmd("STLS").startswith("-ERR"), "STLS after a plain login: -ERR")
    raw.cmd("QUIT")
    raw.close()


def test_pop3_ssl(inst):
    pop = poplib.POP3_SSL("127.0.0.1", inst.pop3s_port, context=tls_context(), timeout=30)
    check(pop.getwelcome().startswith(b"+OK"), "greeting over implicit TLS (poplib.POP3_SSL)")
    check("STLS" not in pop.capa(), "no STLS offered on the implicit-TLS port")
    pop.user(ALICE)
    check(pop.pass_(ALICE_PW).startswith(b"+OK"), "USER/PASS over implicit TLS")
    check_all_messages(pop, "POP3_SSL")
    pop.quit()

    # The server presents the instance's certificate, valid for mail.example.test.
    context = ssl.create_default_context(cafile=inst.cert)
    sock = socket.create_connection(("127.0.0.1", inst.pop3s_port), timeout=30)
    raw = RawPOP3(context.wrap_socket(sock, server_hostname="mail.example.test"))
    check(raw.greeting().startswith("+OK"), "implicit TLS verifies against the instance certificate")
    raw.cmd("QUIT")
    raw.close()


def test_curl(inst):
    user = "%s:%s" % (ALICE, ALICE_PW)
    code, out, err = curl("pop3://127.0.0.1:%d/" % inst.pop3_port, "-u", user)
    check(code == 0, "curl pop3:// lists the mailbox: " + err)
    listing = [line.split() for line in out.decode().splitlines() if line.strip()]
    check([int(n) for n, _ in listing] == [1, 2], "curl's LIST shows messages 1 and 2: %r" % out)

    code, first, err = curl("pop3://127.0.0.1:%d/1" % inst.pop3_port, "-u", user)
    check(code == 0, "curl pop3://.../1 retrieves message 1: " + err)
    check(body_of(first, "curl") == expected(0), "curl's message 1 is byte for byte what was sent")
    check(len(first) == int(listing[0][1]), "curl's octets = LIST size")

    code, second, err = curl("pop3://127.0.0.1:%d/2" % inst.pop3_port, "-u", user)
    check(code == 0 and body_of(second, "curl") == expected(1),
          "curl pop3://.../2: the message without final newline, CRLF added by SMTP " + err)

    resolve = "mail.example.test:%d:127.0.0.1"
    code, out, err = curl("--ssl-reqd", "--cacert", inst.cert, "--resolve", resolve % inst.pop3_port,
                          "pop3://mail.example.test:%d/1" % inst.pop3_port, "-u", user)
    check(code == 0, "curl pop3:// --ssl-reqd (STLS), certificate verified: " + err)
    check(out == first, "same bytes over STLS")

    code, out, err = curl("--cacert", inst.cert, "--resolve", resolve % inst.pop3s_port,
                          "pop3s://mail.example.test:%d/1" % inst.pop3s_port, "-u", user)
    check(code == 0, "curl pop3s:// (implicit TLS), certificate verified: " + err)
    check(out == first, "same bytes over pop3s://")

    code, out, err = curl("-k", "pop3s://127.0.0.1:%d/" % inst.pop3s_port, "-u", user)
    check(code == 0 and len(out.decode().splitlines()) == 2, "curl -k pop3s:// lists 2 messages: " + err)

    code, out, err = curl("pop3://127.0.0.1:%d/1" % inst.pop3_port, "-u", ALICE + ":wrong")
    check(code != 0, "curl with a wrong password fails (exit %d)" % code)


def test_plaintext_refused():
    with MailInstance(pop3=True, pop3_config="plaintext_auth = no") as inst:
        inst.start()
        smtp_send(inst.smtp_port, "bob@example.test", [ALICE], SENT[0])
        check(inst.wait_delivered(ALICE, 1), "delivered to the plaintext_auth = no instance")
        raw = RawPOP3(inst.pop3_port)
        raw.greeting()
        capa_status = raw.cmd("CAPA")
        capa = raw.multiline().decode().split("\r\n") if capa_status.startswith("+OK") else []
        check("STLS" in capa, "STLS offered")
        reply = raw.login(ALICE, ALICE_PW)
        check(reply.startswith("-ERR"), "plaintext_auth = no: USER/PASS refused before STLS: " + reply)
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()).decode()
        reply = raw.cmd("AUTH PLAIN " + token)
        check(reply.startswith("-ERR"), "AUTH PLAIN refused before STLS: " + reply)
        check(raw.cmd("STAT").startswith("-ERR"), "and not logged in")
        check(raw.cmd("STLS").startswith("+OK"), "STLS still possible")
        tls = RawPOP3(tls_context().wrap_socket(raw.sock, server_hostname="mail.example.test"))
        capa_status = tls.cmd("CAPA")
        capa = tls.multiline().decode().split("\r\n") if capa_status.startswith("+OK") else []
        check("USER" in capa, "CAPA lists USER once TLS is on")
        check(tls.login(ALICE, ALICE_PW).startswith("+OK"), "USER/PASS accepted after STLS")
        check(tls.cmd("STAT").startswith("+OK 1 "), "STAT after the TLS login")
        tls.cmd("QUIT")
        tls.close()

        pop = poplib.POP3_SSL("127.0.0.1", inst.pop3s_port, context=tls_context(), timeout=30)
        pop.user(ALICE)
        check(pop.pass_(ALICE_PW).startswith(b"+OK"), "USER/PASS on the implicit-TLS port")
        check(body_of(joined(pop.retr(1)[1]), "pop3s") == expected(0), "byte for byte over pop3s")
        pop.quit()

        code, out, err = curl("pop3://127.0.0.1:%d/" % inst.pop3_port, "-u", ALICE + ":" + ALICE_PW)
        check(code != 0, "curl without TLS cannot log in when plaintext_auth = no (exit %d)" % code)
        code, out, err = curl("--ssl-reqd", "-k", "pop3://127.0.0.1:%d/1" % inst.pop3_port,
                              "-u", ALICE + ":" + ALICE_PW)
        check(code == 0 and body_of(out, "curl") == expected(0), "curl --ssl-reqd logs in after STLS: " + err)
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report (plaintext_auth = no instance)")


def main():
    with MailInstance(pop3=True) as inst:
        inst.start()
        for number, message in enumerate(SENT):
            smtp_send(inst.smtp_port, "bob@example.test", [ALICE], message)
            if not inst.wait_delivered(ALICE, number + 1):
                fail("message %d not delivered" % (number + 1))
        test_stls(inst)
        test_pop3_ssl(inst)
        test_curl(inst)
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    test_plaintext_refused()
    print("all pop3 TLS and curl checks passed")


if __name__ == "__main__":
    main()

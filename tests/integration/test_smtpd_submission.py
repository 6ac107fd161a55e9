"""smtpd's submission ports: 587 with STARTTLS (RFC 3207) and AUTH
(RFC 4954) required before MAIL (RFC 6409), 465 with implicit TLS
(RFC 8314). Driven by smtplib, raw TLS sockets, swaks and curl. Checks that
plaintext pipelined after STARTTLS is discarded, that the session restarts
after the handshake, the AUTH error replies, relaying for authenticated
users, and the Message-ID/Date/Received headers added to submitted mail."""

import base64
import os
import shutil
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import RawSMTP as Raw, check, tls_context, wait_for  # noqa: E402


def read_queue_message(spool, queue_id):
    for root, _, names in os.walk(spool):
        if queue_id in names and not root.endswith("tmp"):
            with open(os.path.join(root, queue_id), "rb") as f:
                data = f.read()
            message, position = b"", 0
            while position < len(data):
                kind = data[position:position + 1]
                (length,) = struct.unpack(">I", data[position + 1:position + 5])
                if kind == b"M":
                    message += data[position + 5:position + 5 + length]
                position += 5 + length
            return message
    return None


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def main():
    with harness.MailInstance(submission_config="enable_expn = yes",
                              sections="enabled = no\n[deliverd]\nenabled = no") as inst:
        inst.start(wait_services=("authd", "smtpd", "submission"))
        inst.cli("alias", "add", "staff@example.test", "alice@example.test", "bob@example.test", check_rc=0)
        spool = inst.spool
        harness.wait_for(lambda: harness.port_open(inst.submission_port), 10)

        # --- 587 before TLS: no AUTH offered, MAIL needs AUTH.
        raw = Raw(socket.create_connection(("127.0.0.1", inst.submission_port), timeout=10))
        check(raw.reply()[0].startswith("220 "), "587 greeting")
        raw.send("EHLO client.test\r\n")
        keywords = [line[4:] for line in raw.reply()]
        check("STARTTLS" in keywords and not any(k.startswith("AUTH") for k in keywords),
              "587 in clear: STARTTLS offered, AUTH not (DESIGN §5)")
        check(raw.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0"), "MAIL before AUTH: 530 5.7.0")
        check(raw.cmd("EXPN staff@example.test").startswith("502 5.5.1"), "EXPN before AUTH: 502 5.5.1")
        check(raw.cmd("AUTH PLAIN " + plain("alice@example.test", "alice-secret")).startswith("538 5.7.11"),
              "AUTH in clear refused")
        # RFC 3207 §4.2: a command pipelined after STARTTLS is discarded.
        raw.send("STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n")
        check(raw.reply()[-1].startswith("220 2.0.0"), "STARTTLS: 220 2.0.0")
        raw.sock = tls_context().wrap_socket(raw.sock, server_hostname="mail.example.test")
        raw.buffer = b""
        check(raw.cmd("MAIL FROM:<alice@example.test>").startswith("503 5.5.1"),
              "after the handshake the session starts over (no EHLO yet), and the injected MAIL never ran")
        raw.send("EHLO client.test\r\n")
        keywords = [line[4:] for line in raw.reply()]
        check("AUTH PLAIN LOGIN" in keywords and "STARTTLS" not in keywords, "over TLS: AUTH offered, STARTTLS not")
        check(raw.cmd("STARTTLS").startswith("554 5.5.1"), "STARTTLS twice: 554 5.5.1")
        check(raw.cmd("AUTH CRAM-MD5").startswith("504 5.5.4"), "unknown mechanism: 504 5.5.4")
        check(raw.cmd("AUTH PLAIN ***").startswith("501 5.5.2"), "bad base64 initial response: 501 5.5.2")
        check(raw.cmd("AUTH PLAIN").startswith("334"), "PLAIN without initial response: 334")
        check(raw.cmd("*").startswith("501 5.0.0"), "'*' cancels: 501 5.0.0")
        check(raw.cmd("AUTH LOGIN").startswith("334 VXNlcm5hbWU6"), "LOGIN asks for the user name")
        check(raw.cmd("@@@").startswith("501 5.5.2"), "bad base64 response: 501 5.5.2")
        check(raw.cmd("AUTH PLAIN " + plain("alice@example.test", "wrong")).startswith("535 5.7.8"),
              "wrong password: 535 5.7.8")
        check(raw.cmd("AUTH LOGIN " + base64.b64encode(b"alice@example.test").decode()).startswith("334 UGFzc3dvcmQ6"),
              "LOGIN with initial response asks for the password")
        check(raw.cmd(base64.b64encode(b"alice-secret").decode()).startswith("235 2.7.0"), "LOGIN succeeds: 235 2.7.0")
        check(raw.cmd("AUTH PLAIN " + plain("alice@example.test", "alice-secret")).startswith("503 5.5.1"),
              "AUTH twice: 503 5.5.1")
        raw.send("EXPN staff@example.test\r\n")
        check(raw.reply() == ["250-2.1.5 <alice@example.test>", "250 2.1.5 <bob@example.test>"],
              "EXPN enabled and authenticated: the alias targets (RFC 5321 §3.5.3)")
        check(raw.cmd("EXPN nobody@example.test").startswith("550 5.1.1"), "EXPN of an unknown address: 550 5.1.1")
        check(raw.cmd("MAIL FROM:<alice@example.test>").startswith("250 2.1.0"), "MAIL after AUTH")
        check(raw.cmd("RCPT TO:<friend@remote.test>").startswith("250 2.1.5"), "authenticated users may relay")
        check(raw.cmd("DATA").startswith("354"), "DATA")
        raw.send("Subject: submitted\r\n\r\nhello\r\n.\r\n")
        reply = raw.reply()[-1]
        check(reply.startswith("250 2.0.0 Ok: queued as "), "submitted: " + reply)
        queue_id = reply.rsplit(" ", 1)[1]
        raw.cmd("QUIT")
        message = read_queue_message(spool, queue_id)
        lines = message.split(b"\r\n")
        check(lines[0] == b"Received: from client.test (unknown [127.0.0.1])", "Received: first")
        check(lines[1] == b"\tby mail.example.test (facteur) with ESMTPSA id " + queue_id.encode(),
              "Received: ESMTPSA (RFC 3848)")
        check(lines[2].startswith(b"\t(using TLSv1.") and b"with cipher" in lines[2], "Received: TLS details")
        check(lines[3].startswith(b"\tfor <friend@remote.test>; "), "Received: for")
        check(lines[4] == b"Message-ID: <%s@mail.example.test>" % queue_id.encode(), "Message-ID added (RFC 6409 §8.3)")
        check(lines[5].startswith(b"Date: "), "Date added (RFC 6409 §8.1)")
        check(message.endswith(b"Subject: submitted\r\n\r\nhello\r\n"), "message kept after the added fields")
        log = inst.log()
        check("sasl_method=LOGIN, sasl_username=alice@example.test" in log, "authentication logged")
        check("alice-secret" not in log and "YWxpY2Utc2VjcmV0" not in log, "password never logged")

        # --- smtplib: STARTTLS + AUTH PLAIN on 587.
        with smtplib.SMTP("127.0.0.1", inst.submission_port, timeout=10) as client:
            client.starttls(context=tls_context())
            client.login("bob@example.test", "bob-secret")
            refused = client.sendmail("bob@example.test", ["alice@example.test", "x@remote.test"],
                                      b"Message-ID: <own@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                      b"Subject: smtplib\r\n\r\nbody\r\n")
            check(refused == {}, "smtplib STARTTLS + AUTH PLAIN + two recipients")
        # --- 465 implicit TLS with SMTP_SSL.
        with smtplib.SMTP_SSL("127.0.0.1", inst.submissions_port, timeout=10, context=tls_context()) as client:
            code, _ = client.ehlo("ssl.test")
            check(code == 250 and "auth" in client.esmtp_features and "starttls" not in client.esmtp_features,
                  "465: EHLO over implicit TLS offers AUTH, not STARTTLS")
            code, reply = client.mail("alice@example.test")
            check(code == 530, "465: MAIL before AUTH refused")
            client.rset()
            client.login("alice@example.test", "alice-secret")
            client.mail("alice@example.test")
            client.rcpt("bob@example.test")
            code, reply = client.data(b"Message-ID: <mine@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                      b"Subject: ssl\r\n\r\nbody\r\n")
            check(code == 250, "465: message accepted")
            queue_id = reply.decode().rsplit(" ", 1)[1]
        message = read_queue_message(spool, queue_id)
        check(message.count(b"Message-ID:") == 1 and message.count(b"\r\nDate:") == 1,
              "465: the message's own Message-ID and Date are kept, none added")
        check(b"with ESMTPSA id" in message, "465: ESMTPSA")

        # --- Independent clients: swaks (STARTTLS + AUTH) and curl (SMTPS).
        swaks = shutil.which("swaks")
        if swaks:
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % inst.submission_port, "--from",
                                     "bob@example.test", "--to", "far@remote.test"],
                                    capture_output=True, text=True, timeout=60)
            check("530 5.7.0" in result.stdout, "swaks without AUTH on 587: 530 5.7.0")
        # swaks needs Net::SSLeay for TLS; without it those checks are skipped.
        swaks_tls = swaks and "=== TLS supported" in subprocess.run(
            ["swaks", "--support"], capture_output=True, text=True, timeout=60).stdout + subprocess.run(
            ["swaks", "--support"], capture_output=True, text=True, timeout=60).stderr
        if not swaks_tls:
            print("skip - swaks has no TLS support here (Net::SSLeay missing)")
        if swaks_tls:
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % inst.submission_port, "--tls",
                                     "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password",
                                     "alice-secret", "--from", "alice@example.test", "--to", "far@remote.test"],
                                    capture_output=True, text=True, timeout=60)
            check(result.returncode == 0 and "queued as" in result.stdout, "swaks --tls --auth on 587")
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % inst.submissions_port, "--tlsc",
                                     "--auth", "LOGIN", "--auth-user", "bob@example.test", "--auth-password",
                                     "nope", "--from", "bob@example.test", "--to", "far@remote.test"],
                                    capture_output=True, text=True, timeout=60)
            check("535 5.7.8" in result.stdout, "swaks on 465 with a wrong password: 535 5.7.8")
        with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
            f.write(b"Subject: curl over smtps\r\n\r\nhi\r\n")
            eml = f.name
        result = subprocess.run(["curl", "-sS", "--insecure", "smtps://127.0.0.1:%d" % inst.submissions_port,
                                 "--user", "bob@example.test:bob-secret", "--mail-from", "bob@example.test",
                                 "--mail-rcpt", "alice@example.test", "-T", eml],
                                capture_output=True, text=True, timeout=60)
        os.unlink(eml)
        check(result.returncode == 0, "curl smtps:// with AUTH: %s" % result.stderr)
        result = subprocess.run(["curl", "-sS", "--insecure", "--ssl-reqd",
                                 "smtp://127.0.0.1:%d" % inst.submission_port, "--user",
                                 "bob@example.test:bob-secret", "--mail-from", "bob@example.test",
                                 "--mail-rcpt", "alice@example.test", "-T", "/dev/null"],
                                capture_output=True, text=True, timeout=60)
        check(result.returncode == 0, "curl with STARTTLS on 587: %s" % result.stderr)
        inst.stop()
        check("AddressSanitizer" not in inst.log() and "runtime error:" not in inst.log(),
              "no sanitizer report from the daemons")
        print("all smtpd submission checks passed")


if __name__ == "__main__":
    main()

"""smtpd on port 25 driven by independent clients (smtplib, raw sockets,
swaks, curl): RFC 5321 replies with RFC 3463 codes, PIPELINING (RFC 2920),
dot-stuffing (§4.5.2), BDAT/BINARYMIME (RFC 3030), DSN parameters (RFC 3461),
SIZE (RFC 1870), relay refusals including disguised forms, bare CR/LF
smuggling variants, garbage and over-long lines. The client (127.0.0.1) is
NOT in mynetworks here, so it is an anonymous Internet client."""

import os
import shutil
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import RawSMTP as Raw, check, wait_for  # noqa: E402


def queue_files(spool):
    """Queue ids in every spool folder but tmp (qmgr may have moved them)."""
    found = set()
    for folder in ("incoming", "active", "deferred", "hold", "corrupt"):
        for root, _, names in os.walk(os.path.join(spool, folder)):
            found.update(names)
    return found


def read_queue_file(spool, queue_id):
    """(message bytes, envelope dict) of a queue file (DESIGN §3 records)."""
    path = None
    for root, _, names in os.walk(spool):
        if queue_id in names and not root.endswith("tmp"):
            path = os.path.join(root, queue_id)
    if path is None:
        return None, None
    with open(path, "rb") as f:
        data = f.read()
    message, envelope, position = b"", {}, 0
    while position < len(data):
        kind = data[position:position + 1]
        (length,) = struct.unpack(">I", data[position + 1:position + 5])
        body = data[position + 5:position + 5 + length]
        position += 5 + length
        if kind == b"M":
            message += body
        elif kind == b"E":
            envelope = decode_frame_bytes(body)
    return message, envelope


def decode_frame_bytes(data):
    """An encoded ipc frame (u32 length, version, attributes) as a dict of lists."""
    (length,) = struct.unpack(">I", data[:4])
    body = data[4:4 + length]
    out, position = {}, 1
    while position < len(body):
        (n,) = struct.unpack(">I", body[position:position + 4])
        name = body[position + 4:position + 4 + n].decode()
        position += 4 + n
        (v,) = struct.unpack(">I", body[position:position + 4])
        value = body[position + 4:position + 4 + v]
        position += 4 + v
        out.setdefault(name, []).append(value)
    return out


def queued_id(reply):
    check(reply.startswith("250 2.0.0 Ok: queued as "), "message accepted: " + reply)
    return reply.rsplit(" ", 1)[1]


def main():
    with harness.MailInstance(
            global_config="message_size_limit = 100K",
            smtpd_config="[smtpd]\nmynetworks = 192.0.2.0/24\ndata_line_limit = 2000\nerror_limit = 100",
            sections="enabled = no\n[deliverd]\nenabled = no") as inst:
        inst.start(wait_services=("authd", "smtpd", "submission"))
        port, spool = inst.smtp_port, inst.spool
        # <Postmaster> is postmaster@myhostname (RFC 5321 §4.1.1.3).
        inst.cli("domain", "add", "mail.example.test", check_rc=0)
        inst.add_user("postmaster@mail.example.test", "pm-secret")

        # --- Greeting and EHLO (RFC 5321 §4.2, §4.1.1.1).
        raw = Raw(port)
        check(raw.code() == "220 mail.example.test ESMTP facteur", "220 greeting with the banner")
        raw.send("EHLO client.test\r\n")
        ehlo = raw.reply()
        keywords = [line[4:] for line in ehlo]
        check(keywords == ["mail.example.test", "PIPELINING", "SIZE 102400", "8BITMIME", "ENHANCEDSTATUSCODES",
                           "DSN", "SMTPUTF8", "CHUNKING", "BINARYMIME", "STARTTLS", "ETRN", "HELP"],
              "EHLO lists the extensions; no AUTH without TLS: %r" % keywords)
        check(raw.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==") == "538 5.7.11 Encryption required for requested "
              "authentication mechanism", "AUTH before TLS refused (RFC 4954 §6)")
        check(raw.cmd("VRFY alice").startswith("252 2.5.0"), "VRFY gets 252 2.5.0")
        check(raw.cmd("EXPN staff").startswith("502 5.5.1"), "EXPN disabled: 502 5.5.1")
        check(raw.cmd("TURN").startswith("502 5.5.1"), "TURN: 502 5.5.1")
        etrn = raw.cmd("ETRN example.test")
        check(etrn.startswith("459 4.7.1"), "ETRN from an untrusted client: 459 4.7.1 (RFC 1985): %r" % etrn)
        check(raw.cmd("ETRN").startswith("501 "), "ETRN without a node: 501")
        raw.send("HELP\r\n")
        check(raw.reply()[0].startswith("214-2.0.0"), "HELP: 214")
        check(raw.cmd("NOOP").startswith("250 2.0.0"), "NOOP")
        check(raw.cmd("XYZZY").startswith("500 5.5.2"), "unknown command: 500 5.5.2")
        check(raw.cmd("MAIL FROM <a@b.test>").startswith("501 5.5.4"), "MAIL syntax error: 501 5.5.4")
        check(raw.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1"), "RCPT before MAIL: 503 5.5.1")
        check(raw.cmd("DATA").startswith("503 5.5.1"), "DATA before MAIL: 503 5.5.1")
        check(raw.cmd("mail from:<sender@remote.test>").startswith("250 2.1.0"), "lower-case MAIL accepted")
        check(raw.cmd("MAIL FROM:<x@remote.test>").startswith("503 5.5.1"), "nested MAIL: 503 5.5.1")
        check(raw.cmd("DATA").startswith("554 5.5.1"), "DATA without recipients: 554 5.5.1")
        check(raw.cmd("RSET").startswith("250 2.0.0"), "RSET")
        check(raw.cmd("MAIL FROM:<a@remote.test> SIZE=200000").startswith("552 5.3.4"),
              "SIZE over message_size_limit: 552 5.3.4 (RFC 1870)")
        check(raw.cmd("MAIL FROM:<a@remote.test> BODY=9BIT").startswith("501 5.5.4"), "bad BODY: 501 5.5.4")
        check(raw.cmd("MAIL FROM:<a@remote.test> RET=FULL RET=HDRS").startswith("501 5.5.4"),
              "duplicate parameter: 501 5.5.4")
        check(raw.cmd("MAIL FROM:<a@remote.test> XFOO=1").startswith("555 5.5.4"), "unknown parameter: 555 5.5.4")
        check(raw.cmd("MAIL FROM:<a@remote.test> ENVID=a+zz").startswith("501 5.5.4"), "bad ENVID xtext: 501")
        check(raw.cmd("MAIL FROM:<j\u00f6rg@remote.test>").startswith("553 5.6.7"),
              "8-bit sender without SMTPUTF8: 553 5.6.7")
        check(raw.cmd("MAIL FROM:<j\u00f6rg@remote.test> SMTPUTF8").startswith("250 2.1.0"),
              "8-bit sender with SMTPUTF8 (RFC 6531)")
        check(raw.cmd("RSET").startswith("250"), "RSET")

        # --- Relay rules and recipient checks (DESIGN §5).
        check(raw.cmd("MAIL FROM:<>").startswith("250 2.1.0"), "null sender accepted")
        relay_cases = [
            ("<alice@example.test>", "250 2.1.5"),
            ("<ALICE@Example.TEST>", "250 2.1.5"),
            ("<nobody@example.test>", "550 5.1.1"),
            ("<someone@remote.test>", "554 5.7.1"),
            ("<user%remote.test@example.test>", "550 5.7.1"),
            ('<"user@remote.test"@example.test>', "550 5.7.1"),
            ("<remote.test!user@example.test>", "550 5.7.1"),
            ("<@hop.test:bob@example.test>", "250 2.1.5"),
            ("<@hop.test,@hop2.test:x@remote.test>", "554 5.7.1"),
            ("<Postmaster>", "250 2.1.5"),
            ("<alice@example.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4"),
            ("<alice@example.test> ORCPT=bad", "501 5.5.4"),
            ("<alice@example.test", "501 5.1.3"),
        ]
        for address, expected in relay_cases:
            got = raw.cmd("RCPT TO:" + address)
            check(got.startswith(expected), "RCPT TO:%s -> %s (got %s)" % (address, expected, got))
        check(raw.cmd("QUIT").startswith("221 2.0.0"), "QUIT: 221 2.0.0")
        check(raw.closed(), "connection closed after QUIT")
        log = inst.log()
        check("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <someone@remote.test>: Relay access denied;"
              in log, "relay refusal logged Postfix-style")
        check("disconnect from unknown[127.0.0.1] ehlo=1" in log, "disconnect summary logged")

        # --- A message with smtplib, stored with its Received header first.
        before = queue_files(spool)
        body = ("From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\n"
                "line one\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.test")
            code, reply = client.mail("sender@remote.test", ["RET=HDRS", "ENVID=QQ314159+2Bx"])
            check(code == 250, "MAIL with RET and ENVID")
            code, reply = client.rcpt("alice@example.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice+2Bx@example.test"])
            check(code == 250, "RCPT with NOTIFY and ORCPT")
            code, reply = client.data(body.encode())
            check(code == 250 and reply.startswith(b"2.0.0 Ok: queued as "), "DATA accepted: %r" % reply)
            queue_id = reply.decode().rsplit(" ", 1)[1]
        message, envelope = read_queue_file(spool, queue_id)
        check(message is not None, "queue file %s is in the spool" % queue_id)
        lines = message.split(b"\r\n")
        check(lines[0] == b"Received: from client.test (unknown [127.0.0.1])", "Received: first line")
        check(lines[1] == b"\tby mail.example.test (facteur) with ESMTP id " + queue_id.encode(),
              "Received: by line with protocol and queue id")
        check(lines[2].startswith(b"\tfor <alice@example.test>; "), "Received: for the single recipient")
        received_length = len(b"\r\n".join(lines[:3])) + 2
        check(message[received_length:] == body.encode(),
              "message stored exactly, dot-unstuffed (RFC 5321 §4.5.2)")
        check(envelope["sender"] == [b"sender@remote.test"], "envelope sender")
        check(envelope["envid"] == [b"QQ314159+x"] and envelope["ret"] == [b"hdrs"], "ENVID and RET stored")
        rcpt = decode_frame_bytes(envelope["rcpt"][0])
        check(rcpt["address"] == [b"alice@example.test"] and rcpt["orcpt"] == [b"rfc822;alice+x@example.test"]
              and rcpt["notify"] == [b"6"], "NOTIFY and ORCPT stored: %r" % rcpt)
        check(envelope["protocol"] == [b"ESMTP"] and envelope["client_helo"] == [b"client.test"], "trace info")
        check(wait_for(lambda: f"{queue_id}: from=<sender@remote.test>, size=" in inst.log(), 5),
              "queue line logged")

        # --- PIPELINING: a whole transaction in one write (RFC 2920).
        raw = Raw(port)
        raw.code()
        raw.send("EHLO pipe.test\r\nMAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                 "RCPT TO:<ghost@example.test>\r\nRCPT TO:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
                 "DATA\r\nSubject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        replies = [raw.reply() for _ in range(9)]
        firsts = [r[-1][:9] for r in replies]
        check(firsts == ["250 HELP", "250 2.1.0", "250 2.1.5", "550 5.1.1", "554 5.7.1", "250 2.1.5", "354 End d",
                         "250 2.0.0", "250 2.0.0"][:len(firsts)] and replies[0][0].startswith("250-"),
              "pipelined replies in order: %r" % firsts)
        check(raw.code().startswith("221"), "QUIT after the pipelined transaction")
        queue_id = replies[7][-1].rsplit(" ", 1)[1]
        message, envelope = read_queue_file(spool, queue_id)
        check(len(envelope["rcpt"]) == 2 and b"\tfor <" not in message, "two recipients, no 'for' clause")

        # --- Bare LF / bare CR smuggling (DESIGN §5): never an end of data.
        variants = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r"]
        for variant in variants:
            before = queue_files(spool)
            raw = Raw(port)
            raw.code()
            raw.send("EHLO smuggle.test\r\n")
            raw.reply()
            raw.cmd("MAIL FROM:<a@remote.test>")
            raw.cmd("RCPT TO:<alice@example.test>")
            check(raw.cmd("DATA").startswith("354"), "354 for DATA")
            raw.send(b"Subject: first\r\n\r\nfirst" + variant + b"MAIL FROM:<evil@remote.test>\r\n"
                     b"RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
            got = raw.code()
            check(got.startswith("550 5.6.11"), "smuggling variant %r refused at the real end: %s" % (variant, got))
            check(raw.cmd("NOOP").startswith("250"), "session continues after the refusal")
            raw.cmd("QUIT")
            check(queue_files(spool) == before, "nothing queued for variant %r" % variant)

        # --- Garbage keeps the session alive.
        raw = Raw(port)
        raw.code()
        check(raw.cmd("\x00\x01\x02binary\xff").startswith("500 5.5.2"), "binary garbage: 500 5.5.2")
        raw.send(b"NOOP\n")
        check(raw.code().startswith("500 5.5.2"), "bare LF command: 500 5.5.2")
        raw.send(b"A" * 100000 + b"\r\n")
        check(raw.code() == "500 5.5.2 Error: line too long", "over-long command line: 500 5.5.2 line too long")
        check(raw.cmd("NOOP").startswith("250"), "session alive after garbage")
        raw.send("EHLO x\r\n")
        raw.reply()
        raw.cmd("MAIL FROM:<a@remote.test>")
        raw.cmd("RCPT TO:<alice@example.test>")
        raw.cmd("DATA")
        raw.send(b"Subject: long\r\n\r\n" + b"x" * 5000 + b"\r\nshort\r\n.\r\n")
        check(raw.code().startswith("552 5.3.4"), "line over data_line_limit: 552 5.3.4")
        check(raw.cmd("NOOP").startswith("250"), "session continues after the long line")
        raw.cmd("MAIL FROM:<a@remote.test>")
        raw.cmd("RCPT TO:<alice@example.test>")
        raw.cmd("DATA")
        raw.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 150 + b".\r\n")
        check(raw.code().startswith("552 5.3.4"), "message over message_size_limit: 552 5.3.4 at the end")
        raw.cmd("MAIL FROM:<a@remote.test>")
        raw.cmd("RCPT TO:<alice@example.test>")
        raw.cmd("DATA")
        raw.send(b"".join(b"Received: from hop%d by x; date\r\n" % i for i in range(51)) + b"\r\nloop\r\n.\r\n")
        check(raw.code().startswith("554 5.4.6"), "51 Received headers: 554 5.4.6")
        raw.cmd("QUIT")

        # --- BDAT and BINARYMIME (RFC 3030).
        raw = Raw(port)
        raw.code()
        raw.send("EHLO chunk.test\r\n")
        raw.reply()
        raw.send(b"BDAT 6\r\nQUIT\r\n")
        check(raw.code().startswith("503 5.5.1"), "BDAT before MAIL refused...")
        check(raw.cmd("NOOP").startswith("250"), "...and its chunk (\"QUIT\") consumed, not executed")
        raw.cmd("MAIL FROM:<a@remote.test> BODY=BINARYMIME")
        raw.cmd("RCPT TO:<alice@example.test>")
        check(raw.cmd("DATA").startswith("503 5.5.1"), "DATA after BODY=BINARYMIME: 503 5.5.1")
        chunk1 = b"Subject: binary\r\n\r\n\x00\x01bare\nlf"
        chunk2 = b"\rand cr\r\n"
        raw.send(b"BDAT %d\r\n" % len(chunk1) + chunk1 + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        check(raw.code() == "250 2.0.0 %d octets received" % len(chunk1), "first chunk acknowledged")
        queue_id = queued_id(raw.code())
        message, envelope = read_queue_file(spool, queue_id)
        check(message.endswith(chunk1 + chunk2) and envelope["body"] == [b"binarymime"],
              "binary chunks stored byte for byte")
        raw.cmd("MAIL FROM:<a@remote.test>")
        raw.cmd("RCPT TO:<alice@example.test>")
        bad = b"bare\nlf\r\n\r\n"
        raw.send(b"BDAT %d\r\n" % len(bad) + bad + b"BDAT 0 LAST\r\n")
        check(raw.code().startswith("550 5.6.11"), "bare LF in a non-binary BDAT chunk refused")
        check(raw.code().startswith("503 5.5.1"), "the transaction was reset: next BDAT gets 503")
        raw.cmd("MAIL FROM:<a@remote.test>")
        raw.cmd("RCPT TO:<alice@example.test>")
        raw.send(b"BDAT 0 LAST\r\n")
        queued_id(raw.code())
        raw.cmd("QUIT")

        # --- swaks and curl, independent clients.
        if shutil.which("swaks"):
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from", "s@remote.test",
                                     "--to", "bob@example.test", "--helo", "swaks.test", "--body", "from swaks"],
                                    capture_output=True, text=True, timeout=60)
            check(result.returncode == 0 and "250 2.0.0 Ok: queued as" in result.stdout, "swaks delivers")
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from", "s@remote.test",
                                     "--to", "x@remote.test", "--quit-after", "RCPT"],
                                    capture_output=True, text=True, timeout=60)
            check("554 5.7.1" in result.stdout, "swaks relay attempt refused")
            result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from", "s@remote.test",
                                     "--to", "alice@example.test", "--pipeline"],
                                    capture_output=True, text=True, timeout=60)
            check(result.returncode == 0 and "queued as" in result.stdout, "swaks --pipeline delivers")
        with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
            f.write(b"From: c@remote.test\r\nSubject: curl\r\n\r\n.dot line from curl\r\n")
            eml = f.name
        result = subprocess.run(["curl", "-sS", "smtp://127.0.0.1:%d" % port, "--mail-from", "c@remote.test",
                                 "--mail-rcpt", "alice@example.test", "-T", eml], capture_output=True, text=True,
                                timeout=60)
        os.unlink(eml)
        check(result.returncode == 0, "curl delivers: %s" % result.stderr)
        check(wait_for(lambda: "from=<c@remote.test>" in inst.log(), 5), "curl's message queued")
        check(os.listdir(os.path.join(spool, "tmp")) == [], "no queue file left behind in tmp/ by refused messages")
        inst.stop()
        check("AddressSanitizer" not in inst.log() and "runtime error:" not in inst.log(),
              "no sanitizer report from the daemons")
        print("all smtpd protocol checks passed")


if __name__ == "__main__":
    main()

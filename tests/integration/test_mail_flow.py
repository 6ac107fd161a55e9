"""Mail in, end to end (issue 3): smtpd → queue → qmgr → deliverd → Maildir,
driven by clients nobody here wrote (Python's smtplib, swaks, curl), with the
delivered file checked byte for byte; aliases and pipes; sendmail's maildrop;
a DSN for an over-quota mailbox; kill -9 of qmgr and deliverd in the middle
of a 500-message batch with every accepted message delivered afterwards."""

import email
import os
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import tempfile
import threading
import time

from harness import BIN, MailInstance, check, fail, tls_context, wait_for

TRACE = re.compile(
    rb"^Return-Path: <(?P<sender>[^>]*)>\n"
    rb"Delivered-To: (?P<rcpt>[^\n]+)\n"
    rb"Received: from (?P<helo>\S+) \((?P<rdns>[^\n]*)\[127\.0\.0\.1\]\)\n"
    rb"\tby mail\.example\.test \(facteur\) with (?P<proto>E?SMTPS?A?) id (?P<id>[0-9A-V]{18})\n"
    rb"(?:\t\(using (?P<tls>TLSv1\.[23]) with cipher [^\n]+\)\n)?"
    rb"(?:\tfor <(?P<for>[^>]+)>;|\t[^\n]*;)[^\n]*\n")


def split_trace(data):
    """(trace match, the rest) of a delivered file."""
    match = TRACE.match(data)
    if not match:
        fail("delivered file does not start with the expected trace headers:\n" + data[:600].decode(errors="replace"))
    return match, data[match.end():]


def test_plain_smtp_byte_for_byte(instance):
    body = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: byte check\r\n"
            b"Message-ID: <byte-check@example.test>\r\n\r\n"
            b"line one\r\n.leading dot survives dot-stuffing\r\n..two dots\r\n"
            b"8-bit: caf\xc3\xa9 \xe2\x82\xac\r\n\r\nlast line\r\n")
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.ehlo("client.test")
        refused = smtp.sendmail("alice@example.test", ["bob@example.test"], body, mail_options=["BODY=8BITMIME"])
        check(refused == {}, "smtplib: message to bob accepted on port 25")
    check(instance.wait_delivered("bob@example.test", 1), "the message reaches bob's Maildir")
    data = instance.delivered("bob@example.test")[0]
    trace, rest = split_trace(data)
    check(trace.group("sender") == b"alice@example.test", "Return-Path carries the envelope sender")
    check(trace.group("rcpt") == b"bob@example.test", "Delivered-To names the recipient")
    check(trace.group("helo") == b"client.test", "Received names the HELO")
    check(trace.group("proto") == b"ESMTP", "Received says ESMTP for a plain session")
    check(rest == body.replace(b"\r\n", b"\n"), "the message is stored exactly as sent (LF line ends in Maildir)")
    name = sorted(os.listdir(os.path.join(instance.maildir("bob@example.test"), "new")))[0]
    check(re.search(r",S=%d" % len(data), name) is not None, "Maildir file name carries S=<size>")
    check(stat.S_IMODE(os.stat(os.path.join(instance.maildir("bob@example.test"), "new", name)).st_mode) & 0o077 == 0,
          "delivered file is private to the mailbox owner")


def test_submission_and_implicit_tls(instance):
    message = b"Subject: submitted\r\n\r\nno Date or Message-ID here\r\n"
    with smtplib.SMTP("127.0.0.1", instance.submission_port, timeout=30) as smtp:
        smtp.starttls(context=tls_context())
        smtp.login("alice@example.test", "alice-secret")
        smtp.sendmail("alice@example.test", ["bob@example.test"], message)
    with smtplib.SMTP_SSL("127.0.0.1", instance.submissions_port, context=tls_context(), timeout=30) as smtp:
        smtp.login("alice@example.test", "alice-secret")
        smtp.sendmail("alice@example.test", ["alice@example.test"], b"Subject: over 465\r\n\r\nhi\r\n")
    check(instance.wait_delivered("bob@example.test", 2), "STARTTLS + AUTH submission delivered")
    check(instance.wait_delivered("alice@example.test", 1), "implicit-TLS submission delivered")
    trace, rest = split_trace(instance.delivered("bob@example.test")[1])
    check(trace.group("proto") == b"ESMTPSA", "Received says ESMTPSA after STARTTLS + AUTH")
    check(trace.group("tls") is not None, "Received names the TLS version and cipher")
    parsed = email.message_from_bytes(rest)
    check(parsed["Message-ID"] is not None and parsed["Date"] is not None,
          "submission adds Message-ID and Date when missing")
    check(rest.endswith(b"\n\nno Date or Message-ID here\n"), "the body is untouched")


def test_swaks_and_curl(instance):
    swaks = shutil.which("swaks")
    if not swaks:
        fail("swaks is not installed (scripts/bootstrap installs it)")
    before = len(instance.delivered("alice@example.test"))
    result = subprocess.run([swaks, "--server", f"127.0.0.1:{instance.smtp_port}", "--from", "bob@example.test",
                             "--to", "alice@example.test", "--header", "Subject: via swaks", "--body", "swaks body",
                             "--helo", "swaks.test"], capture_output=True, text=True, timeout=60)
    check(result.returncode == 0, "swaks sends on port 25")
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(b"Subject: via curl\r\n\r\ncurl body\r\n")
        path = f.name
    result = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{instance.smtp_port}", "--mail-from",
                             "bob@example.test", "--mail-rcpt", "alice@example.test", "-T", path],
                            capture_output=True, text=True, timeout=60)
    os.unlink(path)
    check(result.returncode == 0, "curl sends on port 25: " + result.stderr.strip())
    check(instance.wait_delivered("alice@example.test", before + 2), "swaks and curl messages delivered")
    bodies = b"".join(instance.delivered("alice@example.test"))
    check(b"swaks body" in bodies and b"curl body" in bodies, "both bodies arrived")


def test_aliases_and_pipe(instance):
    out_dir = tempfile.mkdtemp(prefix="facteur-pipe-")
    os.chmod(out_dir, 0o777)
    out_file = os.path.join(out_dir, "out")
    instance.cli("alias", "add", "team@example.test", "alice@example.test", check_rc=0)
    instance.cli("alias", "add", "team@example.test", "bob@example.test", check_rc=0)
    instance.cli("alias", "add", "archive@example.test", f"|/usr/bin/tee -a {out_file}", check_rc=0)
    a0 = len(instance.delivered("alice@example.test"))
    b0 = len(instance.delivered("bob@example.test"))
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=30) as smtp:
        smtp.sendmail("carol@remote.test", ["team@example.test"], b"Subject: to the team\r\n\r\nhello team\r\n")
        smtp.sendmail("carol@remote.test", ["bob+lists@example.test"], b"Subject: tagged\r\n\r\nsubaddress\r\n")
        smtp.sendmail("carol@remote.test", ["archive@example.test"], b"Subject: archived\r\n\r\npiped body\r\n")
    check(instance.wait_delivered("alice@example.test", a0 + 1), "alias list reaches alice")
    check(instance.wait_delivered("bob@example.test", b0 + 2), "alias list and bob+lists reach bob")
    tagged = [d for d in instance.delivered("bob@example.test") if b"subaddress" in d]
    check(bool(tagged) and b"Delivered-To: bob+lists@example.test\n" in tagged[0],
          "user+tag is delivered to the user, Delivered-To keeps the tag")
    piped = wait_for(lambda: os.path.exists(out_file) and b"piped body" in open(out_file, "rb").read(), 20)
    check(piped, "a |command alias runs the command with the message on stdin")
    data = open(out_file, "rb").read()
    check(data.startswith(b"Return-Path: <carol@remote.test>\n"), "the pipe gets Return-Path first")
    if os.geteuid() == 0:
        owner = os.stat(out_file).st_uid
        check(owner != 0, "the pipe command did not run as root")
    shutil.rmtree(out_dir, ignore_errors=True)


def test_sendmail(instance):
    before = len(instance.delivered("bob@example.test"))
    message = b"To: bob@example.test\nBcc: alice@example.test\nSubject: from sendmail\n\nline\n.\nafter dot\n"
    result = subprocess.run([os.path.join(BIN, "sendmail"), "-C", instance.conf, "-t", "-i",
                             "-f", "alice@example.test"], input=message, capture_output=True, timeout=60)
    check(result.returncode == 0, "sendmail -t -i exits 0: " + result.stderr.decode(errors="replace"))
    check(instance.wait_delivered("bob@example.test", before + 1), "sendmail's message reaches bob")
    data = [d for d in instance.delivered("bob@example.test") if b"from sendmail" in d][0]
    check(b"Bcc:" not in data, "Bcc is removed by sendmail -t")
    check(b"\nline\n.\nafter dot\n" in data, "-i keeps a lone dot line")


def test_over_quota_dsn(instance):
    instance.add_user("carol@example.test", "carol-secret", "--quota", "2K")
    a0 = len(instance.delivered("alice@example.test"))
    big = b"Subject: too big for carol\r\nMessage-ID: <quota@example.test>\r\n\r\n" + b"x" * 70 + b"\r\n"
    big += (b"y" * 70 + b"\r\n") * 60
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.sendmail("alice@example.test", ["carol@example.test"], big,
                      mail_options=["RET=HDRS", "ENVID=quota-test-42"], rcpt_options=["NOTIFY=FAILURE"])
    check(instance.wait_delivered("alice@example.test", a0 + 1, timeout=30), "alice gets a report back")
    report = [d for d in instance.delivered("alice@example.test") if b"multipart/report" in d]
    check(bool(report), "the report is a multipart/report")
    trace, rest = report[-1][:400], report[-1]
    check(b"Return-Path: <>\n" in trace, "the report has the null sender")
    parsed = email.message_from_bytes(rest.split(b"\n", 1)[1])
    check(parsed.get_content_type() == "multipart/report", "Content-Type multipart/report (RFC 3464)")
    check(parsed.get_param("report-type") == "delivery-status", "report-type=delivery-status")
    parts = list(parsed.walk())
    status = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    check(bool(status), "a message/delivery-status part")
    text = rest.decode(errors="replace")
    check("Final-Recipient: rfc822; carol@example.test" in text, "Final-Recipient names carol")
    check("Action: failed" in text and "Status: 5.2.2" in text, "Action failed, Status 5.2.2 (mailbox full)")
    check("Original-Envelope-Id: quota-test-42" in text, "ENVID comes back as Original-Envelope-Id")
    check(any(p.get_content_type() == "text/rfc822-headers" for p in parts), "RET=HDRS returns only the headers")
    check("yyyyyyyy" not in text, "no body with RET=HDRS")
    check(not instance.delivered("carol@example.test"), "nothing landed in carol's full mailbox")


def send_batch(port, first, count, sent, errors):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for i in range(first, first + count):
                message = (f"Subject: batch {i}\r\nMessage-ID: <batch-{i}@example.test>\r\n\r\n"
                           f"message number {i}\r\n").encode()
                smtp.sendmail("alice@example.test", ["bob@example.test"], message)
                sent.append(i)
    except Exception as error:  # noqa: BLE001 - reported by the caller
        errors.append(repr(error))


def test_kill_9_mid_batch(instance):
    b0 = len(instance.delivered("bob@example.test"))
    sent, errors = [], []
    senders = [threading.Thread(target=send_batch, args=(instance.smtp_port, 125 * k, 125, sent, errors))
               for k in range(4)]
    for thread in senders:
        thread.start()
    wait_for(lambda: len(instance.delivered("bob@example.test")) - b0 >= 60, 60, interval=0.01)
    for pid in instance.pids("qmgr"):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(instance.delivered("bob@example.test")) - b0 >= 250, 60, interval=0.01)
    for pid in instance.pids("deliverd"):
        os.kill(pid, signal.SIGKILL)
    for thread in senders:
        thread.join(120)
    check(not errors, "all 500 messages accepted while daemons were killed: " + "; ".join(errors[:3]))
    check(len(sent) == 500, "500 messages accepted")
    done = wait_for(lambda: len({m for m in batch_numbers(instance)}) >= 500, 90, interval=0.2)
    numbers = batch_numbers(instance)
    if not done and os.environ.get("FACTEUR_DEBUG_STUCK"):
        os.system("ss -xp | grep -E 'qmgr|deliverd'; ls -R " + instance.spool + " | head -50")
    missing = sorted(set(range(500)) - numbers)
    check(done and not missing, f"every accepted message was delivered after the restarts (missing {missing[:10]})")
    check("exited unexpectedly signal=9" in instance.log(), "master saw the kills")
    leftovers = [f for folder in ("incoming", "active") for f in os.listdir(os.path.join(instance.spool, folder))]
    check(wait_for(lambda: not [f for folder in ("incoming", "active")
                                for f in os.listdir(os.path.join(instance.spool, folder))], 30),
          f"the queue drains completely (left: {leftovers[:5]})")


def batch_numbers(instance):
    numbers = set()
    for data in instance.delivered("bob@example.test"):
        match = re.search(rb"message number (\d+)\n", data)
        if match and b"Subject: batch" in data:
            numbers.add(int(match.group(1)))
    return numbers


def main():
    with MailInstance(sections="[deliverd]\nquota_exceeded_permanent = yes\n") as instance:
        instance.start()
        test_plain_smtp_byte_for_byte(instance)
        test_submission_and_implicit_tls(instance)
        test_swaks_and_curl(instance)
        test_aliases_and_pipe(instance)
        test_sendmail(instance)
        test_over_quota_dsn(instance)
        test_kill_9_mid_batch(instance)
    print("all mail flow tests passed")


if __name__ == "__main__":
    main()

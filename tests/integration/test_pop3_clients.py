"""pop3d driven by Python's poplib and by raw sockets on the plain port
(issue 4): USER/PASS, every retrieved message compared byte for byte with
what was sent by SMTP (dot-stuffed lines, "From " lines, 8-bit UTF-8, a
message without a final newline, a 160 KB one), STAT/LIST sizes against the
retrieved octets, TOP, UIDL, CAPA (RFC 2449), APOP (RFC 1939 §7), AUTH PLAIN
and LOGIN (RFC 5034), a wrong password ([AUTH], RFC 3206) and the
login_failure_limit disconnect."""

import base64
import hashlib
import os
import poplib
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, sanitizer_clean, smtp_send,  # noqa: E402
                     split_served_trace)

ALICE, ALICE_PW = "alice@example.test", "alice-secret"

# What is sent (smtplib adds the final CRLF to the one that lacks it; RFC
# 5321 §4.1.1.4: the data always ends with CRLF before the ".").
MESSAGES = [
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: tricky lines\r\n"
    b"Message-ID: <tricky@example.test>\r\n\r\n"
    b"first line\r\n. leading dot and space\r\n..x two dots\r\n.\r\n...\r\nFrom me\r\n>From quoted already\r\n"
    b"8-bit: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xac\r\n\r\n\r\nafter two empty lines\r\n\tindented\r\nlast\r\n",
    b"Subject: no final newline\r\nMessage-ID: <no-newline@example.test>\r\n\r\nbody without CRLF at the end",
    b"Subject: big one\r\nMessage-ID: <big@example.test>\r\n\r\n" +
    b"".join(b"%05d " % i + (b"." if i % 7 == 0 else b"") + b"y" * 70 + b"\r\n" for i in range(2000)),
    b"Subject: header only\r\nMessage-ID: <header-only@example.test>\r\n",
]


def expected(index):
    data = MESSAGES[index]
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def joined(lines):
    """poplib's lines (CRLF removed, dot-unstuffed) back into the octets sent."""
    return b"".join(line + b"\r\n" for line in lines)


def deliver_all(inst):
    for number, message in enumerate(MESSAGES):
        smtp_send(inst.smtp_port, "bob@example.test", [ALICE], message)
        # One at a time: the mailbox order is the delivery order.
        if not inst.wait_delivered(ALICE, number + 1):
            fail("message %d not delivered" % (number + 1))
    check(True, "%d messages delivered to alice by SMTP" % len(MESSAGES))


def check_retrieved(data, index, how):
    parts = split_served_trace(data)
    if parts is None:
        fail(how + ": message %d does not start with Return-Path, Delivered-To, Received:\n%r"
             % (index + 1, data[:300]))
    trace, rest = parts
    check(trace.startswith(b"Return-Path: <bob@example.test>\r\nDelivered-To: alice@example.test\r\n"),
          how + ": message %d has the trace header lines of deliverd and smtpd" % (index + 1))
    if rest != expected(index):
        for position, (a, b) in enumerate(zip(rest, expected(index))):
            if a != b:
                break
        else:
            position = min(len(rest), len(expected(index)))
        fail(how + ": message %d differs from what was sent at byte %d: got %r, sent %r"
             % (index + 1, position, rest[max(0, position - 40):position + 40],
                expected(index)[max(0, position - 40):position + 40]))
    check(True, how + ": message %d is byte for byte what was sent (CRLF, dots, 8-bit)" % (index + 1))


def test_capa_before_login(inst):
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    welcome = pop.getwelcome()
    check(welcome.startswith(b"+OK"), "greeting +OK")
    check(re.search(rb"<[^<>@\s]+@[^<>\s]+>$", welcome) is not None,
          "greeting ends in an APOP timestamp <...@...> (RFC 1939 §7)")
    capa = pop.capa()
    for name in ("TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL", "STLS",
                 "IMPLEMENTATION"):
        check(name in capa, "CAPA before login lists " + name)
    check("PLAIN" in capa.get("SASL", []) and "LOGIN" in capa.get("SASL", []),
          "SASL lists PLAIN and LOGIN on loopback: %r" % capa.get("SASL"))
    pop.user(ALICE)
    pop.pass_(ALICE_PW)
    after = pop.capa()
    for name in ("TOP", "UIDL", "PIPELINING", "RESP-CODES"):
        check(name in after, "CAPA in TRANSACTION state lists " + name)
    pop.quit()


def test_user_pass_and_bytes(inst):
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    check(pop.user(ALICE).startswith(b"+OK"), "USER +OK")
    check(pop.pass_(ALICE_PW).startswith(b"+OK"), "PASS +OK")
    count, total = pop.stat()
    check(count == len(MESSAGES), "STAT counts %d messages (got %d)" % (len(MESSAGES), count))
    response, listing, _ = pop.list()
    sizes = {}
    for entry in listing:
        number, size = entry.split()
        sizes[int(number)] = int(size)
    check(sorted(sizes) == list(range(1, len(MESSAGES) + 1)), "LIST has one line per message, numbered 1..n")
    check(sum(sizes.values()) == total, "STAT's size is the sum of the LIST sizes")
    retrieved = []
    for number in range(1, count + 1):
        response, lines, octets = pop.retr(number)
        data = joined(lines)
        retrieved.append(data)
        check(response.startswith(b"+OK"), "RETR %d +OK" % number)
        check(len(data) == sizes[number] == octets,
              "RETR %d: %d octets, LIST says %d (exact CRLF octet count)" % (number, len(data), sizes[number]))
        check(pop.list(number).split() == [b"+OK", b"%d" % number, b"%d" % sizes[number]],
              "LIST %d answers the same size" % number)
        check_retrieved(data, number - 1, "poplib RETR")

    # TOP (RFC 1939 §7): the header, the empty line, then n body lines.
    first = retrieved[0]
    head_end = first.index(b"\r\n\r\n") + 4
    check(joined(pop.top(1, 0)[1]) == first[:head_end], "TOP 1 0: the header and the empty line")
    body_lines = first[head_end:].split(b"\r\n")
    check(joined(pop.top(1, 4)[1]) == first[:head_end] + b"\r\n".join(body_lines[:4]) + b"\r\n",
          "TOP 1 4: header plus four body lines, a lone '.' line stuffed and unstuffed")
    big = retrieved[2]
    big_head = big.index(b"\r\n\r\n") + 4
    check(joined(pop.top(3, 100000)[1]) == big, "TOP with more lines than the body: the whole message")

    # UIDL (RFC 1939 §7): 1..70 characters 0x21..0x7E, unique, also per message.
    response, uidl, _ = pop.uidl()
    uids = {}
    for entry in uidl:
        number, uid = entry.split(b" ", 1)
        uids[int(number)] = uid
    check(sorted(uids) == list(range(1, count + 1)), "UIDL lists every message")
    check(len(set(uids.values())) == count, "UIDL values are unique")
    check(all(re.fullmatch(rb"[\x21-\x7e]{1,70}", uid) for uid in uids.values()),
          "UIDL values are 1..70 printable characters")
    for number in (1, count):
        check(pop.uidl(number).split() == [b"+OK", b"%d" % number, uids[number]],
              "UIDL %d answers the listed value" % number)
    check(pop.noop().startswith(b"+OK"), "NOOP")
    check(pop.quit().startswith(b"+OK"), "QUIT +OK")
    check(big_head > 0, "big message retrieved in full")
    return uids


def test_second_session_same_bytes(inst, uids):
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    pop.user(ALICE)
    pop.pass_(ALICE_PW)
    check(pop.stat()[0] == len(MESSAGES), "after QUIT without DELE every message is still there")
    check_retrieved(joined(pop.retr(1)[1]), 0, "second session")
    uidl = {int(e.split()[0]): e.split()[1] for e in pop.uidl()[1]}
    check(uidl == uids, "UIDL is the same in the next session (after RETR marked the messages seen)")
    pop.quit()


def test_auth_mechanisms(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()).decode()
    check(raw.cmd("AUTH PLAIN " + token).startswith("+OK"), "AUTH PLAIN with an initial response (RFC 5034)")
    check(raw.cmd("STAT").startswith("+OK %d " % len(MESSAGES)), "STAT after AUTH PLAIN")
    check(raw.cmd("QUIT").startswith("+OK"), "QUIT")
    raw.close()

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("AUTH PLAIN").rstrip() == "+", "AUTH PLAIN without initial response: empty '+ ' challenge")
    check(raw.cmd(token).startswith("+OK"), "the response on its own line logs in")
    raw.cmd("QUIT")
    raw.close()

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    challenge = raw.cmd("AUTH LOGIN")
    check(challenge.startswith("+ ") and base64.b64decode(challenge[2:]).lower().startswith(b"user"),
          "AUTH LOGIN asks for the user name")
    challenge = raw.cmd(base64.b64encode(ALICE.encode()).decode())
    check(challenge.startswith("+ ") and base64.b64decode(challenge[2:]).lower().startswith(b"pass"),
          "then for the password")
    check(raw.cmd(base64.b64encode(ALICE_PW.encode()).decode()).startswith("+OK"), "AUTH LOGIN logs in")
    raw.cmd("QUIT")
    raw.close()

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("AUTH PLAIN").rstrip() == "+", "AUTH PLAIN challenge")
    check(raw.cmd("*").startswith("-ERR"), "'*' cancels the exchange (RFC 5034 §4)")
    check(raw.cmd("CAPA").startswith("+OK"), "and the session goes on")
    raw.multiline()
    raw.cmd("QUIT")
    raw.close()


def test_apop(inst):
    inst.cli("user", "apop", ALICE, "--secret-stdin", input="apop-secret\n", check_rc=0)
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    check(pop.apop(ALICE, "apop-secret").startswith(b"+OK"), "APOP with the user's secret (poplib.apop)")
    check(pop.stat()[0] == len(MESSAGES), "STAT after APOP")
    check_retrieved(joined(pop.retr(2)[1]), 1, "after APOP")
    pop.quit()

    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    try:
        pop.apop(ALICE, "not-the-secret")
        fail("APOP with a wrong secret was accepted")
    except poplib.error_proto as error:
        check(str(error.args[0], "ascii", "replace").startswith("-ERR"), "APOP with a wrong secret: -ERR")
    pop.close()

    # The digest computed by hand, as RFC 1939 §7 defines it, over a raw socket.
    raw = RawPOP3(inst.pop3_port)
    stamp = re.search(r"<[^>]*>", raw.greeting()).group(0)
    digest = hashlib.md5((stamp + "apop-secret").encode()).hexdigest()
    check(raw.cmd("APOP %s %s" % (ALICE, digest)).startswith("+OK"), "APOP digest = MD5(timestamp + secret)")
    raw.cmd("QUIT")
    raw.close()

    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    try:
        pop.apop("bob@example.test", "bob-secret")
        fail("APOP worked for bob, who has no APOP secret")
    except poplib.error_proto:
        check(True, "APOP for a user without an APOP secret: -ERR")
    pop.close()

    inst.cli("user", "apop", ALICE, "--clear", check_rc=0)
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    try:
        pop.apop(ALICE, "apop-secret")
        fail("APOP still works after facteur user apop --clear")
    except poplib.error_proto:
        check(True, "after `facteur user apop --clear` APOP is refused")
    pop.close()


def test_auth_failures(inst):
    pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    pop.user(ALICE)
    try:
        pop.pass_("wrong-password")
        fail("a wrong password was accepted")
    except poplib.error_proto as error:
        text = error.args[0].decode(errors="replace")
        check(text.startswith("-ERR [AUTH]"), "wrong password: -ERR [AUTH] (RFC 3206): " + text)
    # The session goes on: the right password now works.
    pop.user(ALICE)
    check(pop.pass_(ALICE_PW).startswith(b"+OK"), "a later good login in the same session works")
    pop.quit()

    # login_failure_limit = 3 (default): the third failure closes the session.
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    replies = []
    for attempt in range(3):
        raw.cmd("USER bob@example.test")
        replies.append(raw.cmd("PASS nope-%d" % attempt))
    check(all(r.startswith("-ERR") for r in replies), "three wrong passwords: three -ERR")
    check(raw.closed(), "after login_failure_limit failures the connection is closed")
    raw.close()


def main():
    with MailInstance(pop3=True) as inst:
        inst.start()
        deliver_all(inst)
        test_capa_before_login(inst)
        uids = test_user_pass_and_bytes(inst)
        test_second_session_same_bytes(inst, uids)
        test_auth_mechanisms(inst)
        test_apop(inst)
        test_auth_failures(inst)
        # Still serving after all that.
        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
        pop.user(ALICE)
        pop.pass_(ALICE_PW)
        check(pop.stat()[0] == len(MESSAGES), "nothing was deleted by any of these sessions")
        pop.quit()
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    print("all pop3 client checks passed")


if __name__ == "__main__":
    main()

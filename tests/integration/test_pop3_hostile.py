"""Hostile and broken POP3 clients (DESIGN §5: every input has a limit, bad
input gets a clear error, never a crash): binary garbage, a 100 KB line,
unknown commands, bad message numbers, broken AUTH exchanges, commands in
the wrong state, many pipelined commands in one write (RFC 2449 §6.6),
half-closed connections, the login idle timeout, error_limit, and kill -9
of pop3d during a session (master restarts it, nothing is deleted). After
each, pop3d must still serve; the log must hold no sanitizer report."""

import base64
import os
import random
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, sanitizer_clean, smtp_send,  # noqa: E402
                     wait_for)

ALICE, ALICE_PW = "alice@example.test", "alice-secret"
MESSAGES = 3


def serving(inst, what):
    """A fresh session logs in and sees every message: nothing was deleted."""
    def attempt():
        try:
            raw = RawPOP3(inst.pop3_port)
            raw.greeting()
            ok = raw.login(ALICE, ALICE_PW).startswith("+OK") and \
                raw.cmd("STAT").startswith("+OK %d " % MESSAGES)
            raw.cmd("QUIT")
            raw.close()
            return ok
        except OSError:
            return False
    check(wait_for(attempt, 10, interval=0.2), "still serving, nothing deleted, after " + what)
    check(sanitizer_clean(inst.log()), "no sanitizer report after " + what)


def logged_in(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    reply = raw.login(ALICE, ALICE_PW)
    if not reply.startswith("+OK"):
        fail("login: " + reply)
    return raw


def capa_works(raw):
    status = raw.cmd("CAPA")
    return status.startswith("+OK") and b"UIDL" in raw.multiline()


def test_garbage(inst):
    generator = random.Random(4)
    for round_number in range(3):
        raw = RawPOP3(inst.pop3_port)
        raw.greeting()
        blob = bytes(generator.randrange(256) for _ in range(20000))
        blob = blob.replace(b"\n", b"\r\n")[:30000] + b"\r\n\0\0\xff\r\n"
        try:
            raw.send(blob)
        except OSError:
            pass
        raw.closed(timeout=3)
        raw.close()
    serving(inst, "binary garbage")


def test_long_line(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    raw.send(b"A" * 100000)
    raw.send(b"\r\nCAPA\r\n")
    errors = 0
    while True:
        status = raw.status()
        if status.startswith("+OK"):
            break
        if not status.startswith("-ERR"):
            fail("unexpected answer to an over-long line: " + status)
        errors += 1
    check(errors >= 1, "a 100 KB line gets -ERR (%d line(s))" % errors)
    check(b"UIDL" in raw.multiline(), "and the CAPA sent after it is still answered")
    check(raw.login(ALICE, ALICE_PW).startswith("+OK"), "the session goes on: login works")
    raw.cmd("QUIT")
    raw.close()
    serving(inst, "an over-long line")


def test_unknown_commands(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    for command in ("FOO", "XYZZY bar baz", "", "\x01\x02\x7f", "RETR", "USER"):
        reply = raw.cmd(command)
        check(reply.startswith("-ERR"), "%r before login: -ERR" % command)
    check(capa_works(raw), "session continues after unknown commands")
    raw.close()


def test_wrong_state(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("PASS alice-secret").startswith("-ERR"), "PASS before USER: -ERR")
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "UIDL", "TOP 1 0", "LAST"):
        check(raw.cmd(command).startswith("-ERR"), command + " in AUTHORIZATION state: -ERR")
    check(raw.login(ALICE, ALICE_PW).startswith("+OK"), "login after all that")
    for command in ("USER alice@example.test", "PASS alice-secret", "APOP alice@example.test 0123",
                    "AUTH PLAIN", "STLS"):
        check(raw.cmd(command).startswith("-ERR"), command.split()[0] + " in TRANSACTION state: -ERR")
    check(raw.cmd("STAT").startswith("+OK %d " % MESSAGES), "session intact")
    raw.cmd("QUIT")
    raw.close()


def test_bad_message_numbers(inst):
    raw = logged_in(inst)
    for command in ("RETR 0", "RETR -1", "RETR 99999999999999999999", "RETR abc", "RETR 1x", "RETR 4",
                    "DELE 0", "LIST 0", "TOP 1", "TOP 1 -1", "TOP 1 abc", "UIDL 99999999999999999999"):
        check(raw.cmd(command).startswith("-ERR"), command + ": -ERR")
    check(raw.cmd("STAT").startswith("+OK %d " % MESSAGES), "session intact after bad numbers")
    raw.cmd("QUIT")
    raw.close()
    serving(inst, "bad message numbers")


def test_bad_auth(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("AUTH PLAIN !!!not-base64!!!").startswith("-ERR"), "AUTH PLAIN with invalid base64: -ERR")
    check(raw.cmd("AUTH PLAIN").rstrip() == "+", "AUTH PLAIN challenge")
    check(raw.cmd("%%%% also not base64").startswith("-ERR"), "invalid base64 as the response: -ERR")
    check(raw.cmd("AUTH NO-SUCH-MECHANISM").startswith("-ERR"), "unknown SASL mechanism: -ERR")
    check(raw.cmd("AUTH PLAIN " + base64.b64encode(b"no separators here").decode()).startswith("-ERR"),
          "PLAIN response without NUL separators: -ERR")
    huge = base64.b64encode(os.urandom(2900)).decode()
    check(raw.cmd("AUTH PLAIN " + huge).startswith("-ERR"), "a %d-character AUTH initial response: -ERR" % len(huge))
    raw.send("AUTH PLAIN " + "A" * 20000 + "\r\n")
    reply = raw.status()
    check(reply.startswith("-ERR"), "a 20 KB AUTH line: -ERR")
    check(capa_works(raw), "session continues after broken AUTH")
    check(raw.login(ALICE, ALICE_PW).startswith("+OK"), "and can still log in")
    raw.cmd("QUIT")
    raw.close()
    serving(inst, "broken AUTH")


def test_pipelining(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    raw.send("CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nNOOP\r\nBOGUS\r\n"
             "LIST 1\r\nDELE 3\r\nRSET\r\nQUIT\r\n" % (ALICE, ALICE_PW))
    expected = [("+OK", True), ("+OK", False), ("+OK", False), ("+OK %d " % MESSAGES, False), ("+OK", True),
                ("+OK", True), ("+OK", True), ("+OK", True), ("+OK", False), ("-ERR", False),
                ("+OK 1 ", False), ("+OK", False), ("+OK", False), ("+OK", False)]
    for index, (prefix, multi) in enumerate(expected):
        status = raw.status()
        if not status.startswith(prefix):
            fail("pipelined answer %d: wanted %r, got %r" % (index + 1, prefix, status))
        if multi:
            raw.multiline()
    check(True, "a whole session in one write: 14 answers in order (login included)")
    check(raw.closed(), "closed after the pipelined QUIT")
    raw.close()

    raw = logged_in(inst)
    burst = "".join("STAT\r\nNOOP\r\nLIST %d\r\nUIDL %d\r\n" % (n % MESSAGES + 1, n % MESSAGES + 1)
                    for n in range(250))
    raw.send(burst)
    for n in range(250):
        answers = [raw.status() for _ in range(4)]
        number = n % MESSAGES + 1
        if not (answers[0].startswith("+OK %d " % MESSAGES) and answers[1].startswith("+OK")
                and answers[2].startswith("+OK %d " % number) and answers[3].startswith("+OK %d " % number)):
            fail("pipelined burst, group %d: %r" % (n, answers))
    check(True, "1000 pipelined commands in one write: all answered, in order")
    raw.cmd("QUIT")
    raw.close()


def test_half_close(inst):
    raw = logged_in(inst)
    raw.send("DELE 1\r\nSTAT\r\nLIST 2\r\n")
    raw.sock.shutdown(socket.SHUT_WR)
    check(raw.status().startswith("+OK"), "half-closed: DELE answered")
    check(raw.status().startswith("+OK %d " % (MESSAGES - 1)), "half-closed: STAT answered")
    check(raw.status().startswith("+OK 2 "), "half-closed: LIST 2 answered")
    check(raw.closed(), "then the session ends")
    raw.close()
    serving(inst, "a half-close after DELE without QUIT")

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    raw.send("USER %s\r\nPASS %s\r\nSTAT\r\n" % (ALICE, ALICE_PW))
    raw.sock.shutdown(socket.SHUT_WR)
    answers = [raw.status() for _ in range(3)]
    check(all(a.startswith("+OK") for a in answers), "half-closed during login: USER, PASS, STAT answered: %r"
          % answers)
    check(raw.closed(), "then closed")
    raw.close()
    serving(inst, "a half-close during login")


def test_limits(inst):
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    closed_at = None
    for number in range(1, 31):
        try:
            reply = raw.cmd("BOGUS%d" % number)
        except (ConnectionError, OSError):
            closed_at = number
            break
        if not reply.startswith("-ERR"):
            fail("BOGUS%d: %s" % (number, reply))
    check((closed_at is not None and closed_at <= 22) or raw.closed(),
          "error_limit = 20: the session is closed after the 20th error (next command %r failed)" % closed_at)
    raw.close()

    raw = RawPOP3(inst.pop3_port, timeout=15)
    raw.greeting()
    check(raw.closed(timeout=10), "login_idle_timeout = 2s: a silent client is disconnected")
    raw.close()
    serving(inst, "the limits")


def test_kill_9(inst):
    raw = logged_in(inst)
    check(raw.cmd("DELE 1").startswith("+OK") and raw.cmd("DELE 2").startswith("+OK"), "DELE 1, DELE 2")
    old = inst.pids("pop3d")
    check(bool(old), "pop3d pid(s) %r" % old)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    check(raw.closed(timeout=10), "the killed pop3d's session is gone")
    raw.close()
    check(wait_for(lambda: inst.pids("pop3d") and not set(inst.pids("pop3d")) & set(old), 20),
          "master restarted pop3d")
    serving(inst, "kill -9 of pop3d during a session with DELE")
    check("signal=9" in inst.log() or "signal 9" in inst.log(), "master logged the kill")


def main():
    config = "login_idle_timeout = 2s\nerror_limit = 20"
    with MailInstance(pop3=True, pop3_config=config) as inst:
        inst.start()
        for number in range(MESSAGES):
            smtp_send(inst.smtp_port, "bob@example.test", [ALICE],
                      b"Subject: hostile %d\r\n\r\nbody %d\r\n" % (number, number))
        check(inst.wait_delivered(ALICE, MESSAGES), "%d messages delivered" % MESSAGES)
        serving(inst, "start")
        test_garbage(inst)
        test_long_line(inst)
        test_unknown_commands(inst)
        test_wrong_state(inst)
        test_bad_message_numbers(inst)
        test_bad_auth(inst)
        test_pipelining(inst)
        test_half_close(inst)
        test_limits(inst)
        test_kill_9(inst)
        check(sanitizer_clean(inst.log()), "no sanitizer report while running")
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report (leaks included) after stop")
    print("all pop3 hostile-input checks passed")


if __name__ == "__main__":
    main()

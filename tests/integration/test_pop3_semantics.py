"""What POP3 clients rely on (RFC 1939), on a Maildir: DELE only marks and
deletions happen at QUIT (UPDATE, §6) — never after RSET or a dropped
connection; a mailbox is locked for one session ([IN-USE], RFC 2449 §8.1.2)
while deliverd keeps delivering into it (new mail is not in the open
session's listing, survives its UPDATE and shows in the next session);
UIDL stable across sessions, a pop3d restart and an imapd-like flag rename
(two pop3d processes, so the lock is checked across processes); RETR and
TOP mark \\Seen (cur/ with ":2,S"); LAST (RFC 1460)."""

import os
import poplib
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, maildir_messages, sanitizer_clean,  # noqa: E402
                     smtp_send, split_served_trace, wait_for)

ALICE, ALICE_PW = "alice@example.test", "alice-secret"


def sent(number):
    return (b"Subject: sem %d\r\nMessage-ID: <sem-%d@example.test>\r\n\r\nbody of message %d\r\n.\r\n"
            b"From the middle\r\nend %d\r\n" % (number, number, number, number))


def subjects(inst):
    """{subject number: (sub folder, file name)} of alice's Maildir."""
    out = {}
    for name, (sub, data) in maildir_messages(inst.maildir(ALICE)).items():
        match = re.search(rb"^Subject: sem (\d+)$", data, re.M)
        if match:
            out[int(match.group(1))] = (sub, name)
    return out


def flags(name):
    return name.split(":2,", 1)[1] if ":2," in name else None


def login(inst, timeout=10):
    """A poplib session for alice; retries while the previous one still holds the lock."""
    deadline = time.monotonic() + timeout
    while True:
        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
        pop.user(ALICE)
        try:
            pop.pass_(ALICE_PW)
            return pop
        except poplib.error_proto as error:
            pop.close()
            if b"[IN-USE]" not in error.args[0] or time.monotonic() > deadline:
                fail("login failed: %r" % error.args[0])
            time.sleep(0.1)


def uidl(pop):
    return {int(e.split()[0]): e.split()[1].decode() for e in pop.uidl()[1]}


def body(pop, number):
    data = b"".join(line + b"\r\n" for line in pop.retr(number)[1])
    parts = split_served_trace(data)
    if parts is None:
        fail("message %d lacks the trace header lines: %r" % (number, data[:200]))
    return parts[1]


def test_uidl_and_seen(inst):
    first = login(inst)
    check(first.stat()[0] == 5, "5 messages")
    uids = uidl(first)
    first.quit()

    pop = login(inst)
    check(uidl(pop) == uids, "UIDL identical in the next session")
    check(body(pop, 1) == sent(1), "RETR 1 byte for byte")
    top = pop.top(2, 0)[1]
    check(b"Subject: sem 2" in top, "TOP 2 0 shows message 2's header")
    check(pop._shortcmd("LAST").split()[:2] == [b"+OK", b"2"], "LAST: 2, the highest message accessed (RFC 1460)")
    pop.quit()
    files = subjects(inst)
    for number in (1, 2):
        sub, name = files[number]
        check(sub == "cur" and "S" in (flags(name) or ""),
              "RETR/TOP marked message %d \\Seen: cur/%s" % (number, name))
    check("S" not in (flags(files[3][1]) or ""), "message 3, never accessed, is not \\Seen")

    # imapd-like flag changes between sessions: new/X -> cur/X:2,S and
    # cur/X:2,S -> cur/X:2,FS. UIDL must not change (issue 4).
    maildir = inst.maildir(ALICE)
    sub, name = files[3]
    base = name.split(":2,")[0]
    os.rename(os.path.join(maildir, sub, name), os.path.join(maildir, "cur", base + ":2,S"))
    sub, name = files[1]
    os.rename(os.path.join(maildir, sub, name), os.path.join(maildir, "cur", name.split(":2,")[0] + ":2,FS"))
    pop = login(inst)
    check(uidl(pop) == uids, "UIDL unchanged after flag renames by another program")
    check(body(pop, 3) == sent(3), "the renamed message 3 still retrieves byte for byte")
    pop.quit()

    # A restarted pop3d (master starts a new one) gives the same UIDLs.
    old = inst.pids("pop3d")
    for pid in old:
        os.kill(pid, signal.SIGTERM)
    check(wait_for(lambda: len(inst.pids("pop3d")) == len(old) and not set(inst.pids("pop3d")) & set(old), 20),
          "pop3d restarted by master after SIGTERM")
    pop = login(inst)
    check(uidl(pop) == uids, "UIDL unchanged after a pop3d restart")
    pop.quit()
    return uids


def test_dele_rset(inst, uids):
    pop = login(inst)
    check(pop.dele(1).startswith(b"+OK") and pop.dele(2).startswith(b"+OK"), "DELE 1, DELE 2")
    check(pop.stat()[0] == 3, "STAT no longer counts deleted messages")
    for command in ("RETR 1", "LIST 1", "DELE 1", "TOP 1 0", "UIDL 1"):
        try:
            pop._shortcmd(command)
            fail(command + " of a deleted message answered +OK")
        except poplib.error_proto:
            pass
    check(True, "RETR/LIST/DELE/TOP/UIDL of a deleted message: -ERR")
    check(len(pop.list()[1]) == 3 and len(pop.uidl()[1]) == 3, "LIST and UIDL leave deleted messages out")
    check(pop.rset().startswith(b"+OK"), "RSET")
    check(pop.stat()[0] == 5, "after RSET all 5 are back")
    pop.quit()
    check(len(subjects(inst)) == 5, "DELE + RSET + QUIT deletes nothing")

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    raw.login(ALICE, ALICE_PW)
    check(raw.cmd("DELE 1").startswith("+OK") and raw.cmd("DELE 5").startswith("+OK"), "raw DELE 1, DELE 5")
    raw.close()  # dropped without QUIT
    pop = login(inst)
    check(pop.stat()[0] == 5 and uidl(pop) == uids,
          "a connection dropped after DELE deletes nothing (RFC 1939 §6)")
    pop.quit()
    check(len(subjects(inst)) == 5, "all 5 files still in the Maildir")


def test_in_use(inst):
    holder = login(inst)
    second = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    second.user(ALICE)
    try:
        second.pass_(ALICE_PW)
        fail("a second session for alice logged in while the first is open")
    except poplib.error_proto as error:
        check(error.args[0].startswith(b"-ERR [IN-USE]"), "second session: %r" % error.args[0])
    second.close()
    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.login("bob@example.test", "bob-secret").startswith("+OK"), "another user is not blocked")
    raw.cmd("QUIT")
    raw.close()
    holder.quit()
    after = login(inst, timeout=5)
    check(after.stat()[0] == 5, "after the first QUIT the second can log in")
    after.quit()


def test_delivery_during_session(inst, uids):
    pop = login(inst)
    check(pop.stat()[0] == 5, "session open with 5 messages")
    smtp_send(inst.smtp_port, "bob@example.test", [ALICE], sent(6))
    check(wait_for(lambda: 6 in subjects(inst), 20), "message 6 delivered while the session is open")
    check(pop.stat()[0] == 5, "the open session does not see the new message")
    try:
        pop.list(6)
        fail("LIST 6 answered in the session opened before message 6")
    except poplib.error_proto:
        check(True, "LIST 6: -ERR in that session")
    check(pop.dele(1).startswith(b"+OK"), "DELE 1 (message 'sem 1')")
    check(pop.quit().startswith(b"+OK"), "QUIT with a deletion, UPDATE state")
    files = subjects(inst)
    check(1 not in files, "message 1 is gone from the Maildir")
    check(sorted(files) == [2, 3, 4, 5, 6], "the message delivered during the session survived: %r" % sorted(files))
    pop = login(inst)
    now = uidl(pop)
    check(pop.stat()[0] == 5, "next session: 5 messages")
    check(set(now.values()) >= {uids[n] for n in (2, 3, 4, 5)},
          "messages 2..5 keep their UIDL")
    check(uids[1] not in now.values(), "the deleted message's UIDL is gone")
    check(body(pop, 5) == sent(6), "the new message is message 5 now, byte for byte")
    pop.quit()
    return now


def test_dele_quit(inst, now):
    pop = login(inst)
    doomed = now[1]
    check(body(pop, 1) == sent(2), "message 1 is now 'sem 2'")
    pop.dele(1)
    pop.quit()
    check(2 not in subjects(inst), "DELE + QUIT: the file is gone from the Maildir")
    pop = login(inst)
    check(pop.stat()[0] == 4 and doomed not in uidl(pop).values(), "and from the next session")
    pop.quit()

    raw = RawPOP3(inst.pop3_port)
    raw.greeting()
    check(raw.cmd("QUIT").startswith("+OK"), "QUIT in AUTHORIZATION state: +OK, nothing touched")
    raw.close()


def main():
    # Two pop3d processes share the sockets: the mailbox lock must hold
    # across processes, whichever accepts a connection.
    with MailInstance(pop3=True, pop3_config="processes = 2") as inst:
        inst.start()
        for number in range(1, 6):
            smtp_send(inst.smtp_port, "bob@example.test", [ALICE], sent(number))
            if not wait_for(lambda: number in subjects(inst), 20):
                fail("message %d not delivered" % number)
        uids = test_uidl_and_seen(inst)
        test_dele_rset(inst, uids)
        test_in_use(inst)
        now = test_delivery_during_session(inst, uids)
        test_dele_quit(inst, now)
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    print("all pop3 semantics checks passed")


if __name__ == "__main__":
    main()

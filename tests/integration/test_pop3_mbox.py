"""pop3d over an mbox mailbox (issue 4: both storage formats): messages
byte for byte as sent (mboxrd "From " quoting undone, the mbox-internal
Status header never served), LIST sizes, UIDL stable across sessions and
after pop3d itself marked messages seen (Status: R), DELE + RSET and a
dropped connection delete nothing, [IN-USE], and DELE + QUIT rewriting the
mbox with the other messages plus one delivered during the session."""

import os
import poplib
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, sanitizer_clean, smtp_send,  # noqa: E402
                     split_served_trace, wait_for)

CAROL, CAROL_PW = "carol@example.test", "carol-secret"


def sent(number):
    return (b"From: Bob <bob@example.test>\r\nSubject: mbox %d\r\nMessage-ID: <mbox-%d@example.test>\r\n\r\n"
            b"From me, a line mbox must quote\r\n>From already quoted\r\n>>From twice\r\n"
            b". dot space\r\n..two\r\n.\r\ncaf\xc3\xa9 %d\r\n\r\nFrom the end\r\n" % (number, number, number))


def mbox_file(inst):
    return os.path.join(inst.mail_dir, "example.test", "carol", "mbox")


def mbox_text(inst):
    try:
        with open(mbox_file(inst), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def mbox_messages(inst):
    """[(From_ line, message text)] of carol's mbox (split at RFC 4155 From_ lines)."""
    data = mbox_text(inst)
    starts = [m.start() for m in re.finditer(rb"(?m)^From \S+ ", data)]
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def numbers_in_mbox(inst):
    return [int(m.group(1)) for text in mbox_messages(inst)
            for m in [re.search(rb"(?m)^Subject: mbox (\d+)$", text)] if m]


def login(inst, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
        pop.user(CAROL)
        try:
            pop.pass_(CAROL_PW)
            return pop
        except poplib.error_proto as error:
            pop.close()
            if b"[IN-USE]" not in error.args[0] or time.monotonic() > deadline:
                fail("login failed: %r" % error.args[0])
            time.sleep(0.1)


def retrieve(pop, number):
    data = b"".join(line + b"\r\n" for line in pop.retr(number)[1])
    parts = split_served_trace(data)
    if parts is None:
        fail("mbox message %d lacks Return-Path/Delivered-To/Received at the top: %r" % (number, data[:300]))
    return data, parts[1]


def uidl(pop):
    return {int(e.split()[0]): e.split()[1].decode() for e in pop.uidl()[1]}


def main():
    with MailInstance(pop3=True) as inst:
        inst.start()
        inst.add_user(CAROL, CAROL_PW, "--format", "mbox")
        for number in (1, 2, 3):
            smtp_send(inst.smtp_port, "bob@example.test", [CAROL], sent(number))
            if not wait_for(lambda: numbers_in_mbox(inst) == list(range(1, number + 1)), 20):
                fail("message %d not in carol's mbox: %r" % (number, mbox_text(inst)[-400:]))
        check(b"\n>From me, a line mbox must quote\n" in mbox_text(inst), "deliverd quoted 'From me' in the mbox")

        pop = login(inst)
        count, total = pop.stat()
        check(count == 3, "STAT: 3 messages in the mbox")
        sizes = {int(e.split()[0]): int(e.split()[1]) for e in pop.list()[1]}
        check(sum(sizes.values()) == total, "STAT size = sum of LIST sizes")
        for number in (1, 2, 3):
            data, rest = retrieve(pop, number)
            check(len(data) == sizes[number], "RETR %d: octets = LIST size %d" % (number, sizes[number]))
            check(rest == sent(number), "RETR %d: byte for byte as sent ('From ' unquoted, dots, 8-bit)" % number)
            check(b"Status:" not in data and b"X-UID" not in data, "no mbox-internal header served")
        top = b"".join(line + b"\r\n" for line in pop.top(1, 1)[1])
        check(top.endswith(b"\r\n\r\nFrom me, a line mbox must quote\r\n"), "TOP 1 1: header, empty line, one line")
        uids = uidl(pop)
        check(len(set(uids.values())) == 3 and all(re.fullmatch(r"[\x21-\x7e]{1,70}", u) for u in uids.values()),
              "3 distinct valid UIDL values")
        pop.quit()
        texts = mbox_messages(inst)
        check(len(texts) == 3 and all(re.search(rb"(?m)^Status: [A-Z]*R", t.split(b"\n\n", 1)[0]) for t in texts),
              "RETR marked the messages seen in the mbox (Status: R)")

        pop = login(inst)
        check(uidl(pop) == uids, "UIDL unchanged in the next session, after the Status rewrite")
        data, rest = retrieve(pop, 2)
        check(rest == sent(2) and len(data) == sizes[2], "message 2 still byte for byte, same size")
        pop.dele(1)
        pop.dele(3)
        check(pop.stat()[0] == 1, "STAT after two DELE: 1")
        pop.rset()
        pop.quit()
        check(numbers_in_mbox(inst) == [1, 2, 3], "DELE + RSET + QUIT: the mbox still holds 1, 2, 3")

        raw = RawPOP3(inst.pop3_port)
        raw.greeting()
        check(raw.login(CAROL, CAROL_PW).startswith("+OK"), "raw login to the mbox")
        check(raw.cmd("DELE 2").startswith("+OK"), "DELE 2")
        raw.close()
        pop = login(inst)
        check(pop.stat()[0] == 3, "a dropped connection deleted nothing")
        second = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
        second.user(CAROL)
        try:
            second.pass_(CAROL_PW)
            fail("second session on the mbox logged in")
        except poplib.error_proto as error:
            check(error.args[0].startswith(b"-ERR [IN-USE]"), "mbox locked for a second session: [IN-USE]")
        second.close()

        # DELE 2 while message 4 arrives; QUIT must keep 1, 3 and 4.
        check(pop.dele(2).startswith(b"+OK"), "DELE 2 in the open session")
        smtp_send(inst.smtp_port, "bob@example.test", [CAROL], sent(4))
        check(wait_for(lambda: numbers_in_mbox(inst) == [1, 2, 3, 4], 20),
              "message 4 appended to the mbox during the session")
        check(pop.stat()[0] == 2, "the open session does not see message 4")
        check(pop.quit().startswith(b"+OK"), "QUIT (UPDATE rewrites the mbox)")
        check(numbers_in_mbox(inst) == [1, 3, 4], "the mbox holds 1, 3 and the new 4: %r" % numbers_in_mbox(inst))
        check(not os.path.exists(mbox_file(inst) + ".lock"), "no dot-lock left behind")

        pop = login(inst)
        now = uidl(pop)
        check(pop.stat()[0] == 3, "next session: 3 messages")
        check(now[1] == uids[1] and now[2] == uids[3], "messages 1 and 3 keep their UIDL")
        check(uids[2] not in now.values(), "the deleted message's UIDL is gone")
        for number, original in ((1, 1), (2, 3), (3, 4)):
            check(retrieve(pop, number)[1] == sent(original), "message %d (sent as %d) byte for byte"
                  % (number, original))
        pop.dele(3)
        pop.quit()
        check(numbers_in_mbox(inst) == [1, 3], "DELE + QUIT of the last message")
        data = mbox_text(inst)
        check(data.endswith(b"\n\n") and data.count(b"\nFrom ") + data.startswith(b"From ") >= 2,
              "the rewritten mbox is well formed (From_ lines, final empty line)")

        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    print("all pop3 mbox checks passed")


if __name__ == "__main__":
    main()

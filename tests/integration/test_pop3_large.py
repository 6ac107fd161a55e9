"""A 1000-message Maildir through pop3d (issue 4): 20 messages delivered by
SMTP and 980 placed in new/ the way deliverd names them
(<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<served size>), a few the way
other MDAs do (no size fields, one with CRLF line ends); STAT, LIST and
UIDL cover all 1000 with exact sizes, a sample is retrieved byte for byte,
a pipelined burst of RETRs comes back complete and in order, 500 DELE +
QUIT leave exactly the other 500, which the next session lists."""

import os
import poplib
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (MailInstance, RawPOP3, check, fail, maildir_messages, sanitizer_clean,  # noqa: E402
                     served_form)

BOB, BOB_PW = "bob@example.test", "bob-secret"
TOTAL = 1000
BY_SMTP = 20


def copy_message(number):
    """A stored message (LF line ends, like deliverd's), varied sizes and a dot line."""
    lines = [b"Return-Path: <loader@example.test>", b"Delivered-To: bob@example.test",
             b"Subject: copy %d" % number, b"Message-ID: <copy-%d@example.test>" % number, b""]
    lines += [b"line %d of message %d %s" % (i, number, b"w" * (number % 60)) for i in range(number % 37 + 1)]
    lines += [b".", b"end of %d" % number]
    return b"\n".join(lines) + b"\n"


def main():
    with MailInstance(pop3=True) as inst:
        inst.start()
        import smtplib
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=60) as smtp:
            for number in range(BY_SMTP):
                smtp.sendmail("alice@example.test", [BOB],
                              b"Subject: smtp %d\r\nMessage-ID: <smtp-%d@example.test>\r\n\r\nsent by SMTP %d\r\n"
                              % (number, number, number))
        check(inst.wait_delivered(BOB, BY_SMTP, timeout=40), "%d messages delivered by SMTP" % BY_SMTP)

        maildir = inst.maildir(BOB)
        owner = os.stat(maildir)
        seconds = int(time.time()) + 5
        stored = {}
        for number in range(BY_SMTP, TOTAL):
            data = copy_message(number)
            if number % 100 == 99:
                # Another MDA's naming, without size fields: sizes must be
                # computed from the content (and one file holds CRLF already).
                name = "%d.%d_%d.otherhost" % (seconds + number // 100, os.getpid(), number)
                if number == 199:
                    data = data.replace(b"\n", b"\r\n")
            else:
                base = "%d.M%dP%dQ%d.mail.example.test" % (seconds + number // 100, number * 997 % 1000000,
                                                           os.getpid(), number)
                name = "%s,S=%d,W=%d" % (base, len(data), len(served_form(data)))
            temporary = os.path.join(maildir, "tmp", name)
            with open(temporary, "wb") as f:
                f.write(data)
            os.chown(temporary, owner.st_uid, owner.st_gid)
            os.chmod(temporary, 0o600)
            os.rename(temporary, os.path.join(maildir, "new", name))
            stored[name] = data
        files = maildir_messages(maildir)
        check(len(files) == TOTAL, "the Maildir holds %d messages" % TOTAL)
        served = {name: served_form(data) for name, (_, data) in files.items()}

        started = time.monotonic()
        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=60)
        pop.user(BOB)
        pop.pass_(BOB_PW)
        count, total = pop.stat()
        check(count == TOTAL, "STAT: %d messages (got %d)" % (TOTAL, count))
        check(total == sum(len(d) for d in served.values()), "STAT size = the exact served octets of all 1000")
        sizes = {int(e.split()[0]): int(e.split()[1]) for e in pop.list()[1]}
        check(sorted(sizes) == list(range(1, TOTAL + 1)), "LIST: 1000 lines numbered 1..1000")
        uids = {int(e.split()[0]): e.split()[1] for e in pop.uidl()[1]}
        check(sorted(uids) == list(range(1, TOTAL + 1)) and len(set(uids.values())) == TOTAL,
              "UIDL: 1000 distinct values")
        by_content = {data: name for name, data in served.items()}
        sample = sorted({1, 2, BY_SMTP, BY_SMTP + 1, 500, 777, TOTAL} | set(range(3, TOTAL, 97)))
        for number in sample:
            data = b"".join(line + b"\r\n" for line in pop.retr(number)[1])
            if data not in by_content:
                fail("RETR %d is not byte for byte any stored message: %r" % (number, data[:200]))
            check(len(data) == sizes[number], "RETR %d: octets = LIST size" % number)
        check(True, "%d sampled messages retrieved byte for byte" % len(sample))
        pop.quit()

        # PIPELINING: 200 RETR in one write, answers complete and in order.
        raw = RawPOP3(inst.pop3_port, timeout=60)
        raw.greeting()
        raw.login(BOB, BOB_PW)
        raw.send(b"".join(b"RETR %d\r\n" % n for n in range(1, 201)))
        for number in range(1, 201):
            status = raw.status()
            if not status.startswith("+OK"):
                fail("pipelined RETR %d: %s" % (number, status))
            if len(raw.multiline()) != sizes[number]:
                fail("pipelined RETR %d: wrong size" % number)
        check(True, "200 pipelined RETRs answered in order with the right sizes")
        raw.cmd("QUIT")
        raw.close()

        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=60)
        pop.user(BOB)
        pop.pass_(BOB_PW)
        doomed = set(range(2, TOTAL + 1, 2))
        for number in sorted(doomed):
            pop.dele(number)
        check(pop.stat()[0] == TOTAL - len(doomed), "STAT after 500 DELE: 500")
        check(pop.quit().startswith(b"+OK"), "QUIT after 500 DELE")
        left = maildir_messages(maildir)
        check(len(left) == TOTAL - len(doomed), "500 files left in the Maildir (got %d)" % len(left))

        pop = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=60)
        pop.user(BOB)
        pop.pass_(BOB_PW)
        check(pop.stat()[0] == 500, "next session: STAT 500")
        after = {e.split()[1] for e in pop.uidl()[1]}
        check(after == {uids[n] for n in range(1, TOTAL + 1) if n not in doomed},
              "the survivors' UIDLs are exactly the odd-numbered ones")
        data = b"".join(line + b"\r\n" for line in pop.retr(500)[1])
        check(data in by_content, "RETR 500 of the survivors byte for byte")
        pop.quit()
        check(time.monotonic() - started < 45, "all of that in %.1f s" % (time.monotonic() - started))
        originals = {name.split(":2,")[0] for name in files}
        check(all(name.split(":2,")[0] in originals for name in left),
              "the survivors are original files (renamed at most for flags)")
        inst.stop()
        check(sanitizer_clean(inst.log()), "no sanitizer report in the instance log")
    print("all pop3 large-mailbox checks passed")


if __name__ == "__main__":
    main()

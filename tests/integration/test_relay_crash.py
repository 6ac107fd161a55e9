"""Crashes on the sending side (issue 5, "nothing accepted is ever lost"):
kill -9 of relayd on a while it waits for the reply to the final dot (the
remote server takes 3 s), and kill -9 of qmgr on a in the middle of a burst
of 50 messages to a real facteur b. The master restarts the daemon, qmgr
retries, and every message arrives at least once (a duplicate is the price
of RFC 5321 §6.1's "better twice than lost", a loss is a bug); a's queue
drains and no sanitizer report appears. HostileServer and the short relayd
timeouts come from test_relay_hostile.py."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, sanitizer_clean, wait_for  # noqa: E402
from lab import check, Lab, submit, text_message  # noqa: E402
from test_relay_hostile import HostileServer, queue_list, RELAYD_TIMEOUTS  # noqa: E402

BURST = 50
# Long enough that relayd is still waiting when it is killed; the server
# answers after DOT_DELAY (RFC 5321 §4.5.3.2.6 allows it 10 minutes).
CRASH_TIMEOUTS = RELAYD_TIMEOUTS.replace("data_done_timeout = 3s", "data_done_timeout = 20s")
DOT_DELAY = 3.0


def new_pid(host, service, old, timeout=20):
    """The pid of `service` on `host` once it differs from `old` (restarted)."""
    found = {}

    def restarted():
        pids = host.facteur.pids(service)
        if pids and pids[0] != old:
            found["pid"] = pids[0]
            return True
        return False
    wait_for(restarted, timeout, interval=0.1)
    return found.get("pid")


def kill_relayd_mid_transaction(lab, a, server):
    subject = "killed relayd"
    pid = a.facteur.pids("relayd")
    check(len(pid) == 1, f"one relayd runs on a before the crash: {pid}")
    sent = text_message("alice@a.test", "user@s.test", subject)
    submit(lab, "a", "alice@a.test", ["user@s.test"], sent)
    if not wait_for(lambda: server.seen("dot"), 20, interval=0.02):
        fail("expected relayd to send the whole message to s (the server then waits "
             f"{DOT_DELAY} s before answering the dot); s saw {server.connections} connections"
             + lab.excerpt("a", "to=<user@s.test>"))
    os.kill(pid[0], signal.SIGKILL)
    killed_at = time.monotonic()
    # Whatever relayd was told before dying, the server answers this one
    # with 451: the message can only arrive by a retry after the restart.
    server.mode = "normal"
    print(f"note: killed relayd {pid[0]} while s waited to answer the final dot")
    restarted = new_pid(a, "relayd", pid[0])
    check(restarted is not None, f"master restarted relayd after kill -9 (old pid {pid[0]}, now "
          f"{a.facteur.pids('relayd')})" + lab.excerpt("a", "relayd"))
    if not wait_for(lambda: server.received(subject) >= 1, 40):
        fail(f"expected the message in flight when relayd was killed to be retried and delivered; s accepted "
             f"nothing in {time.monotonic() - killed_at:.0f} s ({server.connections} connections)\n"
             + queue_list(a) + lab.excerpt("a", "to=<user@s.test>") + lab.excerpt("a", "relayd"))
    copies = server.received(subject)
    check(copies == 1, f"the message reached s once after the relayd crash ({copies} copies; the first "
          "attempt was answered 451, so only a retry can have delivered it)")
    gone = wait_for(lambda: "user@s.test" not in queue_list(a), 20)
    check(gone, "a's queue no longer holds the message" + ("" if gone else "\n" + queue_list(a)))
    deferred = lab.log_lines("a", "to=<user@s.test>", "status=deferred")
    check(deferred, "a logged the interrupted attempt as deferred" + lab.excerpt("a", "to=<user@s.test>"))
    print("note: deferral logged: " + deferred[0].split(": ", 1)[-1])


def kill_qmgr_mid_burst(lab, a, b):
    subjects = [f"burst {n:02d}" for n in range(BURST)]
    messages = [text_message("alice@a.test", "bob@b.test", subject) for subject in subjects]
    qmgr = a.facteur.pids("qmgr")
    check(len(qmgr) == 1, f"one qmgr runs on a before the crash: {qmgr}")
    errors = []

    def send_all():
        try:
            with lab.smtp("a") as smtp:
                smtp.ehlo("client.lab.test")
                for message in messages:
                    refused = smtp.sendmail("alice@a.test", ["bob@b.test"], message)
                    if refused:
                        errors.append(refused)
        except Exception as error:  # reported by the main thread
            errors.append(error)
    sender = threading.Thread(target=send_all)
    sender.start()

    def distinct():
        got = set()
        for data in b.facteur.delivered("bob@b.test"):
            for subject in subjects:
                if f"Subject: {subject}\r\n".encode() in data or f"Subject: {subject}\n".encode() in data:
                    got.add(subject)
        return got
    # Kill as soon as deliveries to b have begun: the burst is in flight.
    wait_for(lambda: len(b.facteur.delivered("bob@b.test")) >= 3, 40, interval=0.02)
    at_kill = len(b.facteur.delivered("bob@b.test"))
    os.kill(qmgr[0], signal.SIGKILL)
    print(f"note: killed qmgr {qmgr[0]} with {at_kill} of {BURST} messages delivered at b")
    sender.join(60)
    check(not errors, f"a's smtpd accepted all {BURST} messages while qmgr was killed: {errors!r}")
    restarted = new_pid(a, "qmgr", qmgr[0])
    check(restarted is not None, f"master restarted qmgr after kill -9 (old pid {qmgr[0]})"
          + lab.excerpt("a", "qmgr"))
    check(at_kill < BURST, f"qmgr died in the middle of the burst ({at_kill} of {BURST} delivered at that time)")
    if not wait_for(lambda: len(distinct()) == BURST, 60, interval=0.5):
        missing = sorted(set(subjects) - distinct())
        fail(f"expected all {BURST} messages at bob@b.test after qmgr's crash; {len(missing)} missing: "
             f"{missing[:10]}\n" + queue_list(a) + lab.excerpt("a", "qmgr") + lab.excerpt("a", "bob@b.test"))
    total = len(b.facteur.delivered("bob@b.test"))
    check(len(distinct()) == BURST, f"all {BURST} distinct messages reached b ({total} deliveries, "
          f"{total - BURST} duplicates)")
    drained = wait_for(lambda: "Mail queue is empty" in queue_list(a), 30, interval=0.5)
    check(drained, "a's queue drains after the qmgr crash" + ("" if drained else "\n" + queue_list(a)))


def main():
    with Lab() as lab:
        a = lab.facteur("a", relayd=CRASH_TIMEOUTS)
        b = lab.facteur("b")
        lab.bare("s")
        lab.start()
        server = HostileServer(lab.hosts["s"], mode="slow-dot-451", dot_delay=DOT_DELAY)
        lab.servers.append(server)
        if not wait_for(lambda: a.facteur.pids("relayd") and a.facteur.pids("qmgr"), 15):
            fail("relayd and qmgr are not both running on a" + lab.excerpt("a", "master"))

        kill_relayd_mid_transaction(lab, a, server)
        kill_qmgr_mid_burst(lab, a, b)

        for name, host in (("a", a), ("b", b)):
            check(sanitizer_clean(host.facteur.log()), f"no sanitizer report in {name}'s log"
                  + lab.excerpt(name, "Sanitizer") + lab.excerpt(name, "runtime error"))
    print("PASS")


if __name__ == "__main__":
    main()

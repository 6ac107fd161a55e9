"""Temporary failures across lab hosts (issue 5): a scripted server on host
s (a small Python SMTP server bound to s's address, port 25) answers 451 to
RCPT for retry@s.test three times, then 250 → the message is deferred on a
(RFC 5321 §4.2.1: 4yz is transient), listed by `facteur queue list` with the
reason, retried, then delivered. For slow@s.test it always answers 451 and
[qmgr] delay_warning_time is 2s → bob@a.test gets exactly one "delayed"
report (RFC 3464 Action: delayed) while the message stays queued."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, wait_for  # noqa: E402
from lab import check, Lab, queue_list, reports, submit, text_message  # noqa: E402

RETRY_FAILURES = 3


def rcpt_reply(recipient, attempt):
    if recipient == "retry@s.test" and attempt <= RETRY_FAILURES:
        return "451 4.3.0 <retry@s.test>: temporary lookup failure, try again"
    if recipient == "slow@s.test":
        return "451 4.4.3 <slow@s.test>: still not ready"
    return "250 2.1.5 Ok"


def main():
    with Lab() as lab:
        a = lab.facteur("a", qmgr="delay_warning_time = 2s")
        lab.bare("s")
        lab.start()
        server = lab.scripted_server("s", rcpt_reply=rcpt_reply)

        # --- 451 three times, then 250.
        sent = text_message("alice@a.test", "retry@s.test", "retried")
        submit(lab, "a", "alice@a.test", ["retry@s.test"], sent)
        seen = {}

        def listed_deferred():
            text = queue_list(a)
            if "retry@s.test" in text and "451" in text:
                seen["list"] = text
                return True
            return bool(server.messages)
        wait_for(listed_deferred, 30, interval=0.1)
        check("list" in seen, "while deferred, `facteur queue list` shows retry@s.test with the 451 reason"
              + (f": {seen.get('list', '')!r}" if "list" in seen else
                 f"; last listing: {queue_list(a)!r}" + lab.excerpt("a", "retry@s.test")))
        if not wait_for(lambda: any("retry@s.test" in m[1] for m in server.messages), 40):
            fail(f"expected retry@s.test to be delivered after {RETRY_FAILURES} answers 451; the server saw "
                 f"{server.attempts.get('retry@s.test', 0)} RCPTs and accepted nothing"
                 + lab.excerpt("a", "retry@s.test"))
        check(server.attempts["retry@s.test"] == RETRY_FAILURES + 1,
              f"a retried until accepted: {server.attempts['retry@s.test']} RCPTs for {RETRY_FAILURES} refusals")
        received = [m for m in server.messages if "retry@s.test" in m[1]][0]
        check(received[0] == "alice@a.test" and b"Subject: retried" in received[2],
              "the scripted server got alice's message")
        deferred = [l for l in lab.log_lines("a", "to=<retry@s.test>") if "status=deferred" in l]
        check(len(deferred) >= RETRY_FAILURES and "451" in deferred[0],
              f"a logged each attempt as status=deferred with the 451 reply ({len(deferred)} lines)"
              + lab.excerpt("a", "to=<retry@s.test>"))
        check(any("status=sent" in l for l in lab.log_lines("a", "to=<retry@s.test>")),
              "a logged the final status=sent")

        # --- Always 451: one delay warning to the sender, message still queued.
        sent = text_message("bob@a.test", "slow@s.test", "delayed")
        submit(lab, "a", "bob@a.test", ["slow@s.test"], sent)
        if not a.facteur.wait_delivered("bob@a.test", 1, timeout=30):
            fail("expected a delay warning to bob@a.test (delay_warning_time = 2s, slow@s.test answers 451); "
                 "none within 30 s" + lab.excerpt("a", "slow@s.test"))
        time.sleep(4)  # several more retries: still one warning, never a second
        delayed = reports(a.facteur.delivered("bob@a.test"), "delayed")
        check(len(delayed) == 1 and len(a.facteur.delivered("bob@a.test")) == 1,
              f"bob got exactly one delay report: {len(delayed)} delayed among "
              f"{len(a.facteur.delivered('bob@a.test'))} messages")
        report, recipients = delayed[0]
        check(report.get("From", "").lower().startswith("mailer-daemon") or "MAILER-DAEMON" in report.get("From", ""),
              f"the report is from MAILER-DAEMON: {report.get('From')!r}")
        check(report.get("Return-Path", "<>").strip() == "<>", f"null Return-Path: {report.get('Return-Path')!r}")
        check(recipients[0].get("action", "").lower() == "delayed" and
              recipients[0].get("status", "").startswith("4."),
              f"Action: delayed with a 4.x.x Status: {recipients}")
        check("slow@s.test" in recipients[0].get("final-recipient", ""), f"Final-Recipient slow@s.test: {recipients}")
        listing = queue_list(a)
        check("slow@s.test" in listing, f"the message is still queued after the warning: {listing!r}")
        check(server.attempts.get("slow@s.test", 0) >= 2, "a kept retrying slow@s.test")
    print("PASS")


if __name__ == "__main__":
    main()

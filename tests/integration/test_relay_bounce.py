"""A permanent refusal across lab hosts (issue 5): b's smtpd answers
550 5.1.1 to RCPT for a user it does not have → a bounces the message to
alice's Maildir on a: an RFC 3464 multipart/report (report-type=
delivery-status, RFC 6522) from MAILER-DAEMON with the null Return-Path,
whose per-recipient fields say Final-Recipient: rfc822;nobody@b.test,
Action: failed, Status: 5.1.1, Remote-MTA: dns;mx.b.test and
Diagnostic-Code: smtp; 550 5.1.1 …, with the original message attached."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail  # noqa: E402
from lab import check, Lab, reports, submit, text_message  # noqa: E402


def main():
    with Lab() as lab:
        a = lab.facteur("a")
        lab.facteur("b")
        lab.start()

        sent = text_message("alice@a.test", "nobody@b.test", "to nobody", "Nobody reads this.\r\n")
        submit(lab, "a", "alice@a.test", ["nobody@b.test"], sent)
        if not a.facteur.wait_delivered("alice@a.test", 1, timeout=30):
            fail("expected a bounce in alice@a.test's Maildir after b refused nobody@b.test with 550 5.1.1; "
                 "nothing arrived in 30 s" + lab.excerpt("a", "nobody@b.test") + lab.excerpt("b", "nobody@b.test"))
        data = a.facteur.delivered("alice@a.test")[0]
        check(data.startswith(b"Return-Path: <>"), f"the bounce has the null Return-Path: {data[:80]!r}")
        found = reports([data], "failed")
        if not found:
            fail(f"expected a multipart/report with Action: failed; got:\n{data[:3000].decode(errors='replace')}")
        report, recipients = found[0]
        check(report.get_content_type() == "multipart/report"
              and report.get_param("report-type") == "delivery-status",
              f"Content-Type multipart/report; report-type=delivery-status: {report.get('Content-Type')!r}")
        check("MAILER-DAEMON" in report.get("From", "").upper(), f"From: MAILER-DAEMON: {report.get('From')!r}")
        check("alice@a.test" in report.get("To", ""), f"To: alice@a.test: {report.get('To')!r}")
        fields = recipients[0]
        check(fields.get("final-recipient", "").replace(" ", "").lower() == "rfc822;nobody@b.test",
              f"Final-Recipient: rfc822;nobody@b.test: {fields.get('final-recipient')!r}")
        check(fields.get("action", "").lower() == "failed", f"Action: failed: {fields.get('action')!r}")
        check(fields.get("status") == "5.1.1", f"Status: 5.1.1: {fields.get('status')!r}")
        check(fields.get("remote-mta", "").replace(" ", "").lower().startswith("dns;mx.b.test"),
              f"Remote-MTA: dns; mx.b.test: {fields.get('remote-mta')!r}")
        diagnostic = " ".join(fields.get("diagnostic-code", "").split())
        check(diagnostic.lower().startswith("smtp;") and "550" in diagnostic and "5.1.1" in diagnostic,
              f"Diagnostic-Code: smtp; 550 5.1.1 …: {diagnostic!r}")
        attached = [part for part in report.walk() if part.get_content_type() in ("message/rfc822",
                                                                                  "text/rfc822-headers")]
        check(bool(attached), "the original message (or its header) is attached")
        original = attached[0].as_bytes() if attached else b""
        check(b"Subject: to nobody" in original and b"Message-ID: <to-nobody." in original,
              "the attachment is alice's original message")
        check(b"Nobody reads this." in original, "the whole original is returned (RET unspecified, small message)")
        bounced = [l for l in lab.log_lines("a", "to=<nobody@b.test>") if "status=bounced" in l]
        check(bool(bounced) and "dsn=5.1.1" in bounced[-1] and "relay=mx.b.test[" in bounced[-1],
              "a logs status=bounced, dsn=5.1.1, relay=mx.b.test[…]" + lab.excerpt("a", "nobody@b.test"))
    print("PASS")


if __name__ == "__main__":
    main()

"""qmgr's remote route (issue 5) without relayd: remote mail is deferred
with a clear reason and stays queued; `facteur queue flush DOMAIN` and ETRN
(RFC 1985, from smtplib) retry it now; ETRN from an untrusted client gets
459; the transport table routes a domain to a local one, to an error
(RFC 3464 bounce) and to a fixed next hop; a delay warning (RFC 3464 action
delayed) reaches the sender once. relayd is disabled here: its absence only
defers (the cross-host lab tests the relaying itself)."""

import email
import email.policy
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading

from harness import BIN, MailInstance, check, decode_frame, encode_frame, free_port, wait_for

SENDMAIL = os.path.join(BIN, "sendmail")
NO_RELAYD = "[relayd]\nenabled = no\n"


def send(instance, sender, recipients, subject):
    body = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        refused = smtp.sendmail(sender, recipients, body)
        check(refused == {}, f"{subject}: every recipient accepted")


def listing(instance):
    result = instance.cli("queue", "list", "--json", check_rc=0)
    return [json.loads(line) for line in result.stdout.splitlines() if '"queue_id"' in line]


def queued_for(instance, address):
    return [m for m in listing(instance) if any(r["address"] == address for r in m["recipients"])]


def deferral_lines(instance, queue_id):
    return [line for line in instance.log().splitlines()
            if f"{queue_id}: to=<" in line and "status=deferred (relayd:" in line]


def reports(instance, address, subject_prefix):
    found = []
    for data in instance.delivered(address):
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        if (message["Subject"] or "").startswith(subject_prefix):
            found.append(message)
    return found


def delivery_status(report):
    """The per-recipient blocks of an RFC 3464 report, checked strictly."""
    check(report.get_content_type() == "multipart/report", "the report is multipart/report")
    check(report.get_param("report-type") == "delivery-status", "report-type=delivery-status")
    check(report["From"].startswith("MAILER-DAEMON@"), "the report comes from MAILER-DAEMON")
    parts = report.get_payload()
    check(len(parts) == 3, "three parts: text, delivery-status, the original")
    check(parts[0].get_content_type() == "text/plain", "part 1 is for people")
    check(parts[1].get_content_type() == "message/delivery-status", "part 2 is message/delivery-status")
    blocks = parts[1].get_payload()
    check(blocks[0]["Reporting-MTA"] == "dns; mail.example.test", "Reporting-MTA names this host")
    return blocks[1:]


def test_remote_deferred_and_listed(instance):
    send(instance, "alice@example.test", ["someone@remote.test"], "to the world")
    check(wait_for(lambda: queued_for(instance, "someone@remote.test"), 20), "the remote message is queued")
    message = queued_for(instance, "someone@remote.test")[0]
    queue_id = message["queue_id"]
    check(wait_for(lambda: deferral_lines(instance, queue_id), 20),
          "qmgr logs the deferral with relayd's absence as the reason")
    line = deferral_lines(instance, queue_id)[0]
    check("nexthop=remote.test," in line, "without relayhost the next hop is the recipient's domain: " + line)
    check(wait_for(lambda: queued_for(instance, "someone@remote.test")[0]["queue_name"] == "deferred", 20),
          "the message waits in deferred/")
    recipient = queued_for(instance, "someone@remote.test")[0]["recipients"][0]
    check(recipient["state"] == "deferred" and recipient["dsn"] == "4.3.0" and recipient["delay_reason"].startswith("relayd:"),
          f"queue list shows the deferral and its reason: {recipient}")
    mailq = instance.cli("queue", "list", check_rc=0).stdout
    check(queue_id in mailq and "someone@remote.test" in mailq, "queue list (mailq format) shows it")
    return queue_id


def test_flush_domain(instance, queue_id):
    before = len(deferral_lines(instance, queue_id))
    other = instance.cli("queue", "flush", "elsewhere.test", check_rc=0)
    check(other.stdout.startswith("0 deferred messages for elsewhere.test"), "flush of another domain: " + other.stdout)
    result = instance.cli("queue", "flush", "Remote.TEST", check_rc=0)
    check(result.stdout.lower().startswith("1 deferred message for remote.test flushed"), "flush DOMAIN: " + result.stdout)
    check(wait_for(lambda: len(deferral_lines(instance, queue_id)) > before, 10),
          "the flushed message is tried again at once (backoff is 60s here)")
    sub = instance.cli("queue", "flush", "@test", check_rc=0)
    check(sub.stdout.startswith("1 deferred message for @test"), "flush @DOMAIN covers subdomains: " + sub.stdout)
    bad = instance.cli("queue", "flush", "bad..domain")
    check(bad.returncode == 2, "a malformed domain is a usage error")


def test_etrn(instance, queue_id):
    # RFC 1985: 127.0.0.1 is in mynetworks (the default), so ETRN is allowed.
    check(wait_for(lambda: any(m["queue_name"] == "deferred" for m in queued_for(instance, "someone@remote.test")), 10),
          "the message is back in deferred/ before ETRN")
    before = len(deferral_lines(instance, queue_id))
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        code, _ = smtp.ehlo("client.test")
        check(smtp.has_extn("etrn"), "ETRN is announced in EHLO on port 25")
        code, text = smtp.docmd("ETRN", "remote.test")
        check(code == 250 and b"Queuing for node remote.test started" in text, f"ETRN remote.test: {code} {text}")
        code, text = smtp.docmd("ETRN", "nothing.test")
        check(code == 251, f"ETRN for a domain with nothing queued: {code} {text}")
        code, text = smtp.docmd("ETRN", "#outbound")
        check(code == 458, f"ETRN #queue: no named queues: {code} {text}")
        code, text = smtp.docmd("ETRN", "bad..domain")
        check(code == 501, f"ETRN with bad syntax: {code} {text}")
        smtp.docmd("MAIL", "FROM:<alice@example.test>")
        code, text = smtp.docmd("ETRN", "remote.test")
        check(code == 503, f"ETRN inside a mail transaction: {code} {text}")
        smtp.rset()
    check(wait_for(lambda: len(deferral_lines(instance, queue_id)) > before, 10), "ETRN made qmgr retry the message now")
    check("ETRN remote.test from" in instance.log(), "smtpd logs the ETRN")


def test_transport_local(instance):
    send(instance, "alice@example.test", ["bob@x.test"], "routed to example.test")
    check(instance.wait_delivered("bob@example.test", 1), "x.test -> local:example.test delivers into bob's Maildir")
    data = instance.delivered("bob@example.test")[-1]
    check(b"Subject: routed to example.test" in data, "the routed message is the one delivered")
    send(instance, "alice@example.test", ["nobody@x.test"], "nobody there")
    check(wait_for(lambda: reports(instance, "alice@example.test", "Undelivered"), 20),
          "an unknown user of the rewritten domain bounces")
    blocks = delivery_status(reports(instance, "alice@example.test", "Undelivered")[-1])
    check(blocks[0]["Final-Recipient"] == "rfc822; nobody@x.test" and blocks[0]["Status"] == "5.1.1",
          "reported as 5.1.1 user unknown")


def test_transport_error(instance):
    before = len(reports(instance, "alice@example.test", "Undelivered"))
    send(instance, "alice@example.test", ["carol@blocked.test"], "to a blocked domain")
    check(wait_for(lambda: len(reports(instance, "alice@example.test", "Undelivered")) > before, 20),
          "error:5.7.1 bounces to the sender")
    report = reports(instance, "alice@example.test", "Undelivered")[-1]
    blocks = delivery_status(report)
    check(len(blocks) == 1, "one recipient in the report")
    block = blocks[0]
    check(block["Final-Recipient"] == "rfc822; carol@blocked.test", "Final-Recipient")
    check(block["Action"] == "failed" and block["Status"] == "5.7.1", f"Action failed, Status 5.7.1: {block}")
    check(block["Diagnostic-Code"] == "x-unix; no mail for you", "the table's text is the diagnostic")
    check(not queued_for(instance, "carol@blocked.test"), "the bounced message left the queue")


def test_transport_relay(instance, port):
    send(instance, "alice@example.test", ["dave@hop.test", "erin@hop.test"], "to a fixed next hop")
    def lines():
        return [l for l in instance.log().splitlines() if f"nexthop=[127.0.0.1]:{port}," in l]
    check(wait_for(lambda: len(lines()) >= 2, 20), "relay:[127.0.0.1]:PORT is the next hop used for hop.test")
    check(any("dave@hop.test" in l for l in lines()) and any("erin@hop.test" in l for l in lines()),
          "both recipients were routed there")
    grouped = [l for l in instance.log().splitlines() if f"delivery via [127.0.0.1]:{port} deferred" in l]
    check(grouped, "one relayd request carried both recipients (one deferral for the next hop)")
    queue_id = queued_for(instance, "dave@hop.test")[0]["queue_id"]
    first_attempt = [l for l in grouped if queue_id in l]
    check(len(first_attempt) >= 1, "the grouped deferral names the message")


class FakeRelayd:
    """relayd's socket as qmgr sees it (libmail/relay_protocol.hpp): answers
    per recipient index with canned outcomes and records the requests."""

    def __init__(self, path, outcomes):
        self.outcomes = outcomes  # index -> (outcome, dsn, reason, relay, remote_dsn)
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # qmgr runs as mail_owner when the tests run as root
        self.sock.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(connection,), daemon=True).start()

    def session(self, connection):
        with connection:
            while True:
                try:
                    request = decode_frame(connection)
                except (ConnectionError, OSError, ValueError):
                    return
                self.requests.append(request)
                reply = [("status", "ok")]
                for name, value in request:
                    if name == "recipient":
                        outcome, dsn, reason, relay, remote_dsn = self.outcomes[int(value)]
                        nested = encode_frame([("outcome", outcome), ("dsn", dsn), ("reason", reason),
                                               ("relay", relay), ("remote_dsn", remote_dsn)])
                        reply.append(("result", nested))
                connection.sendall(encode_frame(reply))

    def close(self):
        self.sock.close()


def test_relayd_outcomes_and_reports(instance):
    """What relayd reports becomes the recipients' outcomes and the sender's
    RFC 3464 report: relayed (a next hop without DSN), nothing (a next hop
    that took NOTIFY, RFC 3461 section 6.2.3), failed with the remote reply."""
    relay = "mx.far.test[192.0.2.7]:25"
    fake = FakeRelayd(os.path.join(instance.runtime, "relayd"), {
        0: ("sent", "2.0.0", "250 2.0.0 Ok: queued as 1234", relay, "no"),
        1: ("sent", "2.0.0", "250 2.0.0 Ok: queued as 1235", relay, "yes"),
        2: ("bounced", "5.1.1", "550 5.1.1 <gone@far.test>: Recipient address rejected", relay, "no"),
    })
    try:
        before = len(reports(instance, "alice@example.test", "Undelivered"))
        body = "From: <alice@example.test>\r\nSubject: far away\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
            refused = smtp.sendmail("alice@example.test", ["ok@far.test", "dsn@far.test", "gone@far.test"], body,
                                    rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
            check(refused == {}, "far away: every recipient accepted")
        check(wait_for(lambda: len(reports(instance, "alice@example.test", "Undelivered")) > before, 20),
              "the outcomes from relayd produce one report to the sender")
        relay_requests = [r for r in fake.requests if ("nexthop", "far.test") in r]
        check(len(relay_requests) == 1, f"one relayd request for the three recipients: {fake.requests}")
        check([v for n, v in relay_requests[0] if n == "recipient"] == ["0", "1", "2"], "all three indices in it")
        blocks = delivery_status(reports(instance, "alice@example.test", "Undelivered")[-1])
        by_recipient = {b["Final-Recipient"]: b for b in blocks}
        check(set(by_recipient) == {"rfc822; ok@far.test", "rfc822; gone@far.test"},
              f"relayed and failed are reported, the DSN-capable next hop reports itself: {list(by_recipient)}")
        relayed = by_recipient["rfc822; ok@far.test"]
        check(relayed["Action"] == "relayed" and relayed["Status"] == "2.0.0", "Action: relayed (RFC 3464 2.3.3)")
        check(relayed["Remote-MTA"] == "dns; mx.far.test", "Remote-MTA names the server")
        failed = by_recipient["rfc822; gone@far.test"]
        check(failed["Action"] == "failed" and failed["Status"] == "5.1.1", "Action: failed, Status 5.1.1")
        check(failed["Remote-MTA"] == "dns; mx.far.test", "Remote-MTA on the failure")
        check(failed["Diagnostic-Code"] == "smtp; 550 5.1.1 <gone@far.test>: Recipient address rejected",
              "Diagnostic-Code: smtp; carries the remote reply")
        check(wait_for(lambda: not queued_for(instance, "ok@far.test"), 10), "the message is done and removed")
    finally:
        fake.close()


def test_untrusted_etrn_and_delay_warning():
    with MailInstance(smtpd_config="mynetworks = 192.0.2.0/24\n",
                      sections="delay_warning_time = 1s\n" + NO_RELAYD) as instance:
        instance.start()
        with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
            smtp.ehlo("client.test")
            code, text = smtp.docmd("ETRN", "remote.test")
            check(code == 459 and b"remote.test: client not authorized" in text,
                  f"ETRN from a client outside mynetworks: {code} {text}")
            check(text.startswith(b"4.7.1"), "with the enhanced code 4.7.1")
        # A local submission may go anywhere: sendmail(1) queues it.
        message = b"To: someone@remote.test\nSubject: slow one\n\nthis will wait\n"
        result = subprocess.run([SENDMAIL, "-C", instance.conf, "-f", "alice@example.test", "someone@remote.test"],
                                input=message, capture_output=True, timeout=60)
        check(result.returncode == 0, "sendmail accepted the message: " + result.stderr.decode(errors="replace"))
        check(wait_for(lambda: reports(instance, "alice@example.test", "Delayed Mail"), 30),
              "a delay warning reaches the sender once delay_warning_time has passed")
        warning = reports(instance, "alice@example.test", "Delayed Mail")[0]
        check(warning["Subject"] == "Delayed Mail (still being retried)", "Postfix-like subject")
        text = warning.get_payload()[0].get_payload()
        check("THIS IS A WARNING ONLY" in text, "the text says it is only a warning")
        blocks = delivery_status(warning)
        check(len(blocks) == 1, "one delayed recipient")
        block = blocks[0]
        check(block["Final-Recipient"] == "rfc822; someone@remote.test", "Final-Recipient")
        check(block["Action"] == "delayed", "Action: delayed (RFC 3464 section 2.3.3)")
        check(re.fullmatch(r"4\.\d{1,3}\.\d{1,3}", block["Status"] or "") is not None, "Status 4.x.y: " + str(block["Status"]))
        check(block["Will-Retry-Until"] is not None, "Will-Retry-Until (RFC 3464 section 2.3.7)")
        check(warning.get_payload()[2].get_content_type() == "text/rfc822-headers",
              "a warning returns only the header (RFC 3461 section 4.3)")
        check(warning["Auto-Submitted"] == "auto-replied", "Auto-Submitted: auto-replied")
        # Several more retries (backoff 1-2s): still exactly one warning.
        queue_id = queued_for(instance, "someone@remote.test")[0]["queue_id"]
        count = len(deferral_lines(instance, queue_id))
        check(wait_for(lambda: len(deferral_lines(instance, queue_id)) >= count + 3, 30),
              "the message keeps being retried")
        check(len(reports(instance, "alice@example.test", "Delayed Mail")) == 1, "the delay warning is sent only once")
        check(queued_for(instance, "someone@remote.test"), "the message itself stays queued")


def main():
    table_dir = tempfile.mkdtemp(prefix="facteur-transport-")
    try:
        port = free_port()
        table = os.path.join(table_dir, "transport")
        with open(table, "w") as f:
            f.write("# test routes\n"
                    "x.test        local:example.test\n"
                    "blocked.test  error:5.7.1 no mail for you\n"
                    f"hop.test      relay:[127.0.0.1]:{port}\n")
        os.chmod(table_dir, 0o755)
        os.chmod(table, 0o644)
        # Backoff 60s: a retry within seconds can only come from a flush/ETRN.
        sections = ("minimal_backoff_time = 60s\nmaximal_backoff_time = 60s\ndelay_warning_time = 0\n" + NO_RELAYD)
        with MailInstance(global_config=f"transport_maps = {table}\n", sections=sections) as instance:
            instance.start()
            queue_id = test_remote_deferred_and_listed(instance)
            test_flush_domain(instance, queue_id)
            test_etrn(instance, queue_id)
            test_transport_local(instance)
            test_transport_error(instance)
            test_transport_relay(instance, port)
            test_relayd_outcomes_and_reports(instance)
        test_untrusted_etrn_and_delay_warning()
    finally:
        shutil.rmtree(table_dir, ignore_errors=True)
    print("all qmgr remote-route tests passed")


if __name__ == "__main__":
    main()

"""`facteur queue list|show|hold|release|requeue|flush|delete` and mailq
against a running instance: a message for a remote domain stays deferred
(relayd is disabled here), and the admin steers it. Messages are submitted
with sendmail(1) and with Python's smtplib on the submission port."""

import json
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile

from harness import BIN, MailInstance, check, fail, wait_for

SENDMAIL = os.path.join(BIN, "sendmail")
HEADER = "-Queue ID---------  --Size-- ----Arrival Time----  -Folder- -Sender/Recipient-------"


def queue(instance, *args, rc=0):
    result = instance.cli("queue", *args)
    if rc is not None and result.returncode != rc:
        fail(f"facteur queue {' '.join(args)} exited {result.returncode}, wanted {rc}\n"
             f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def listing(instance):
    """Messages of `queue list --json`, by queue id."""
    out = queue(instance, "list", "--json").stdout
    messages = {}
    for line in out.splitlines():
        record = json.loads(line)
        if "queue_id" in record:
            messages[record["queue_id"]] = record
    return messages


def submit_remote(instance, subject):
    message = f"To: someone@remote.example\nSubject: {subject}\n\nbody of {subject}\n".encode()
    result = subprocess.run([SENDMAIL, "-C", instance.conf, "-t", "-f", "alice@example.test"], input=message,
                            capture_output=True, timeout=60)
    if result.returncode != 0:
        fail("sendmail failed: " + result.stderr.decode(errors="replace"))


def wait_listed(instance, count, folder=None, timeout=30):
    def ready():
        messages = listing(instance)
        if len(messages) < count:
            return None
        if folder and any(m["queue_name"] != folder for m in messages.values()):
            return None
        return messages
    return wait_for(ready, timeout, interval=0.3)


def test_not_running(conf_instance):
    result = conf_instance.cli("queue", "list")
    check(result.returncode == 1 and result.stderr.startswith("facteur: qmgr is not running ("),
          "queue list with qmgr down: exit 1, 'qmgr is not running': " + result.stderr.strip())
    result = conf_instance.cli("queue", "hold", "all")
    check(result.returncode == 1 and "qmgr is not running" in result.stderr, "queue hold with qmgr down fails too")


def test_usage(instance):
    result = queue(instance, "show", "nonsense", rc=2)
    check("is not a queue id" in result.stderr, "a malformed id is a usage error, checked before asking qmgr")
    result = queue(instance, "hold", "../../etc/passwd", rc=2)
    check("is not a queue id" in result.stderr, "a path is not a queue id")
    queue(instance, "delete", rc=2)
    result = queue(instance, "show", "0" * 18, rc=1)
    check("no message" in result.stderr, "an unknown id: exit 1 with qmgr's reason: " + result.stderr.strip())
    result = queue(instance, "release", "0" * 18, rc=1)
    check("no message" in result.stderr, "releasing an unknown id fails")


def test_remote_message_lifecycle(instance):
    empty = queue(instance, "list").stdout
    check(empty == "Mail queue is empty\n", "an empty queue says so: " + empty.strip())

    submit_remote(instance, "first")
    messages = wait_listed(instance, 1, folder="deferred")
    if not messages:
        fail("the remote message was not deferred: " + queue(instance, "list").stdout)
    (queue_id, record), = messages.items()
    check(re.fullmatch(r"[0-9A-V]{18}", queue_id) is not None, "the listing names the queue id")
    check(record["sender"] == "alice@example.test", "the listing names the sender")
    check([r["address"] for r in record["recipients"]] == ["someone@remote.example"], "and the recipient")
    check(record["recipients"][0]["state"] == "deferred" and record["recipients"][0]["delay_reason"] != "",
          "the recipient is deferred with a reason: " + record["recipients"][0]["delay_reason"])
    check(record["message_size"] > 0 and record["arrival_time"] > 0, "size and arrival are given")

    text = queue(instance, "list").stdout
    lines = text.splitlines()
    check(lines[0] == HEADER, "the text listing starts with Postfix's mailq header")
    check(re.match(rf"^{queue_id}  +\d+ \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d  +deferred alice@example\.test$",
                   lines[1]) is not None, "one line per message: id, size, arrival, folder, sender: " + lines[1])
    check(re.match(r"^ {51}deferred someone@remote\.example$", lines[2]) is not None, "then each recipient with its state")
    check(re.match(r"^ {60}\(.+\)$", lines[3]) is not None, "then the reason in parentheses: " + lines[3])
    check(re.match(r"^-- \d+ Kbytes in 1 Request\.$", lines[-1]) is not None, "and the total: " + lines[-1])

    links = tempfile.mkdtemp(prefix="facteur-links-")
    try:
        os.symlink(SENDMAIL, os.path.join(links, "mailq"))
        mailq = subprocess.run([os.path.join(links, "mailq"), "-C", instance.conf], capture_output=True, text=True,
                               timeout=60)
        check(mailq.returncode == 0 and mailq.stdout == text, "mailq prints the same listing")
    finally:
        shutil.rmtree(links, ignore_errors=True)

    shown = queue(instance, "show", queue_id).stdout
    check(f"Queue ID:      {queue_id}\n" in shown and "Folder:        deferred\n" in shown, "show gives the envelope")
    check("Sender:        <alice@example.test>\n" in shown, "show gives the sender")
    check(re.search(r"\n  deferred  <someone@remote\.example> 4\.\d\.\d+ \(.+\)\n", shown) is not None,
          "show gives each recipient's status, dsn and reason")
    check("\n  Subject: first\n" in shown and "\n  Received: (from " in shown, "show gives the headers")
    check("body of first" not in shown, "but not the body")

    result = queue(instance, "hold", queue_id)
    check(result.stdout == "1 message held\n", "hold ID: " + result.stdout.strip())
    held = wait_listed(instance, 1, folder="hold")
    check(held is not None, "the message is in hold/")
    check(re.match(rf"^{queue_id}!", queue(instance, "list").stdout.splitlines()[1]) is not None,
          "a held message is marked '!' like Postfix")
    result = queue(instance, "flush")
    check(re.fullmatch(r"\d+ deferred messages? flushed \(retried now\)\n", result.stdout) is not None,
          "flush: " + result.stdout.strip())
    check(listing(instance)[queue_id]["queue_name"] == "hold", "flush leaves held messages alone")

    result = queue(instance, "release", queue_id)
    check(result.stdout == "1 message released\n", "release ID: " + result.stdout.strip())
    check(wait_listed(instance, 1, folder="deferred") is not None, "the released message is retried and deferred again")

    submit_remote(instance, "second")
    check(wait_listed(instance, 2, folder="deferred") is not None, "a second message is deferred too")
    result = queue(instance, "requeue", "all")
    check(result.stdout == "2 messages requeued\n", "requeue all: " + result.stdout.strip())
    check(wait_listed(instance, 2, folder="deferred") is not None, "requeued messages are routed again")

    result = queue(instance, "hold", "all")
    check(result.stdout == "2 messages held\n", "hold all: " + result.stdout.strip())
    result = queue(instance, "delete", queue_id)
    check(result.stdout == "1 message deleted\n", "delete ID: " + result.stdout.strip())
    result = queue(instance, "del", "all")
    check(result.stdout == "1 message deleted\n", "del all: " + result.stdout.strip())
    check(wait_for(lambda: queue(instance, "list").stdout == "Mail queue is empty\n", 10), "the queue is empty again")
    result = queue(instance, "delete", "all")
    check(result.stdout == "0 messages deleted\n", "delete all on an empty queue is not an error")


def test_local_delivery(instance):
    """A local message goes through and leaves the queue: sendmail for one,
    smtplib on the submission port for another."""
    before = len(instance.delivered("bob@example.test"))
    result = subprocess.run([SENDMAIL, "-C", instance.conf, "-f", "alice@example.test", "bob@example.test"],
                            input=b"Subject: queue test local\n\nhello bob\n", capture_output=True, timeout=60)
    check(result.returncode == 0, "sendmail to a local user exits 0")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", instance.submission_port, timeout=30) as client:
        client.starttls(context=context)
        client.login("alice@example.test", "alice-secret")
        client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: via submission\r\n\r\nhi\r\n")
    check(instance.wait_delivered("bob@example.test", before + 2), "both messages are delivered")
    check(wait_for(lambda: queue(instance, "list").stdout == "Mail queue is empty\n", 10),
          "delivered messages leave the queue")


def main():
    # Deferred mail must stay deferred while the listing is checked: no
    # retry (which moves it to active/) during the test.
    # relayd is disabled: remote mail must stay deferred while it is steered.
    with MailInstance(sections="[qmgr]\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h\n"
                               "[relayd]\nenabled = no\n") as instance:
        test_not_running(instance)
        instance.start()
        test_usage(instance)
        test_remote_message_lifecycle(instance)
        test_local_delivery(instance)
    print("all queue CLI tests passed")


if __name__ == "__main__":
    main()

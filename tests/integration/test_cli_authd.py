"""The admin CLI and authd together (issue: foundation): a domain and a user
added with `facteur`, the password verified through authd's sockets by
independent clients (Dovecot's auth-client protocol, our ipc frames), a wrong
password refused, 20 rapid failures from one IP throttled; facteur
start/status/stop drive a detached master."""

import os
import time

from harness import DovecotAuthClient, Instance, check, ipc_call, wait_for


def lookup(instance, *attributes):
    return dict(ipc_call(instance.lookup_socket, list(attributes)))


def main():
    with Instance() as instance:
        # Before anything runs, the CLI writes the database directly.
        instance.cli("domain", "add", "example.test", check_rc=0)
        instance.cli("user", "add", "alice@example.test", "--password-stdin", input="alice-secret\n", check_rc=0)
        instance.cli("user", "add", "carol@example.test", "--password-stdin", input="carol-secret\n", check_rc=0)
        status = instance.cli("status")
        check(status.returncode == 3, "facteur status exits 3 while nothing runs")

        started = instance.cli_detached("start")
        check(started == 0, "facteur start succeeds")
        check(wait_for(lambda: "authd" in instance.running_services(), 10), "authd is running after facteur start")
        status = instance.cli("status", check_rc=0)
        lines = status.stdout.splitlines()
        check(any(l.split()[0] == "master" and l.split()[1].isdigit() for l in lines[1:]),
              "facteur status lists master with its pid")
        check(any(l.split()[0] == "authd" and l.split()[1].isdigit() and "running" in l for l in lines[1:]),
              "facteur status lists authd with its pid")
        again = instance.cli("status")  # keeps the captured pipes free of a daemon
        again = instance.cli_detached("start")
        check(again != 0 and "already running" in instance.log(),
              "a second facteur start says it is already running")

        client = DovecotAuthClient(instance.sasl_socket)
        check(client.handshake[0].startswith("VERSION\t1\t"), "SASL socket greets with VERSION 1")
        check({"PLAIN", "LOGIN"} <= set(client.mechanisms), "PLAIN and LOGIN are offered")
        reply = client.auth_plain("alice@example.test", "alice-secret")
        check(reply[0] == "OK" and reply[1] == "1" and "user=alice@example.test" in reply,
              f"right password accepted over the SASL socket: {reply}")
        reply = client.auth_plain("Alice@EXAMPLE.test", "alice-secret")
        check(reply[0] == "OK", "addresses are case-insensitive")
        reply = client.auth_plain("alice@example.test", "wrong")
        check(reply[0] == "FAIL" and "temp" not in reply, f"wrong password refused: {reply}")
        reply = client.auth_plain("nobody@example.test", "whatever")
        check(reply[0] == "FAIL", "unknown user refused")

        # The lookup socket, spoken with our frames from an independent encoder.
        answer = lookup(instance, ("op", "verify"), ("user", "alice@example.test"), ("password", "alice-secret"),
                        ("service", "imap"), ("client_ip", "127.0.0.1"))
        check(answer.get("result") == "ok", f"lookup socket verifies the password: {answer}")
        answer = lookup(instance, ("op", "verify"), ("user", "alice@example.test"), ("password", "nope"),
                        ("service", "imap"), ("client_ip", "127.0.0.1"))
        check(answer.get("result") == "fail", "lookup socket refuses a wrong password")
        answer = lookup(instance, ("op", "user"), ("user", "alice@example.test"))
        check(answer.get("result") == "ok" and answer.get("format") == "maildir"
              and answer.get("mail_path", "").endswith("/example.test/alice"), f"user lookup: {answer}")
        answer = lookup(instance, ("op", "resolve"), ("address", "nobody@example.test"))
        check(answer.get("kind") == "unknown_local", "unknown local recipient resolves as unknown_local")
        answer = lookup(instance, ("op", "resolve"), ("address", "someone@elsewhere.test"))
        check(answer.get("kind") == "remote", "other domains resolve as remote")

        # Changes while authd runs go through its admin socket.
        instance.cli("user", "add", "bob@example.test", "--password-stdin", input="bob-secret\n", check_rc=0)
        reply = client.auth_plain("bob@example.test", "bob-secret")
        check(reply[0] == "OK", "a user added while authd runs can log in at once")
        instance.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test", check_rc=0)
        answer = ipc_call(instance.lookup_socket, [("op", "resolve"), ("address", "team@example.test")])
        targets = sorted(v for k, v in answer if k == "target")
        check(targets == ["alice@example.test", "bob@example.test"], f"alias resolves to its members: {targets}")
        instance.cli("user", "passwd", "bob@example.test", "--password-stdin", input="bob-new\n", check_rc=0)
        check(client.auth_plain("bob@example.test", "bob-new")[0] == "OK", "passwd takes effect at once")

        # 20 rapid wrong passwords from one IP: delayed, then refused outright.
        timings, replies = [], []
        for attempt in range(20):
            began = time.monotonic()
            replies.append(client.auth_plain("carol@example.test", "bad-%d" % attempt, rip="192.0.2.7"))
            timings.append(time.monotonic() - began)
        check(all(r[0] == "FAIL" for r in replies), "every wrong password fails")
        check(all(t >= 0.19 for t in timings[3:9]), f"failures past the free ones are delayed: "
              f"{[round(t, 2) for t in timings]}")
        check(all("temp" in r for r in replies[10:]), "after 10 failures the IP is locked out (temporary failure)")
        check(all(t < 0.19 for t in timings[10:]), "locked-out attempts are refused without a password check")
        reply = client.auth_plain("alice@example.test", "alice-secret", rip="192.0.2.7")
        check(reply[0] == "FAIL" and "temp" in reply, "even a right password is refused from the locked-out IP")
        reply = client.auth_plain("alice@example.test", "alice-secret", rip="198.51.100.9")
        check(reply[0] == "OK", "other clients are not affected")
        check("192.0.2.7" in instance.log(), "throttling is logged with the client IP")
        client.close()

        stopped = instance.cli("stop")
        check(stopped.returncode == 0, f"facteur stop succeeds ({stopped.stderr.strip()})")
        check(wait_for(lambda: not instance.instance_processes(), 10), "nothing is left after facteur stop")
        check(instance.cli("status").returncode == 3, "status says not running after stop")


if __name__ == "__main__":
    main()
    print("1 passed, 0 failed")

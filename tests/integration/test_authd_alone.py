"""authd run by itself (no master): the Dovecot auth-client protocol's
validation and concurrency, throttling and lockout, the lookup socket, the
admin socket, SIGHUP reloads, SIGTERM, and a fatal start-up error."""

import base64
import hashlib
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_authd_alone import (AuthdAlone, DovecotClient, encode_frame, ipc_call, plain_response,  # noqa: E402
                             sha512_crypt)

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def auth_plain(client, request_id, user, password, rip="127.0.0.1", extra=""):
    client.send(f"AUTH\t{request_id}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tsecured{extra}"
                f"\tresp={plain_response(user, password)}")
    return client.read_line().split("\t")


def protocol_checks(authd):
    client = DovecotClient(authd.sasl_socket)
    reply = auth_plain(client, 1, "alice@example.test", "alice-secret")
    check(reply == ["OK", "1", "user=alice@example.test"], f"PLAIN with the right password: {reply}")
    reply = auth_plain(client, 2, "alice@example.test", "wrong")
    check(reply[:2] == ["FAIL", "2"] and "temp" not in reply and "reason=Authentication failed" in reply,
          f"PLAIN with a wrong password: {reply}")
    reply = auth_plain(client, 3, "dave@example.test", "dave-secret")
    check(reply[:2] == ["FAIL", "3"] and "reason=Authentication failed" in reply,
          f"a disabled user fails like a wrong password: {reply}")
    reply = auth_plain(client, 4, "nobody@example.test", "x")
    check(reply[:2] == ["FAIL", "4"] and "reason=Authentication failed" in reply,
          f"an unknown user fails like a wrong password: {reply}")
    reply = auth_plain(client, 5, "alice@example.test", "alice-secret")
    check(reply[0] == "OK", "the connection keeps working after failures")

    # LOGIN with CONT steps, then a cancelled one.
    client.send("AUTH\t10\tLOGIN\tservice=imap\trip=127.0.0.1")
    check(client.read_line() == "CONT\t10\t" + base64.b64encode(b"Username:").decode(), "LOGIN: Username:")
    client.send("CONT\t10\t" + base64.b64encode(b"alice@example.test").decode())
    check(client.read_line() == "CONT\t10\t" + base64.b64encode(b"Password:").decode(), "LOGIN: Password:")
    client.send("CONT\t10\t" + base64.b64encode(b"alice-secret").decode())
    check(client.read_line() == "OK\t10\tuser=alice@example.test", "LOGIN succeeds")
    client.send("AUTH\t11\tLOGIN\tservice=imap")
    client.read_line()
    client.send("CONT\t11\t*")
    check(client.read_line() == "FAIL\t11\treason=Aborted", "'*' cancels a request")
    client.send("CONT\t11\tYQ==")
    reply = client.read_line()
    check(reply.startswith("FAIL\t11\t"), f"CONT for a finished request fails, connection kept: {reply}")

    client.send("AUTH\t12\tPLAIN\tservice=smtp\tresp=!!!notbase64")
    reply = client.read_line()
    check(reply.startswith("FAIL\t12\t") and "base64" in reply, f"malformed base64 in resp=: {reply}")
    client.send("AUTH\t13\tLOGIN\tservice=smtp")
    client.read_line()
    client.send("CONT\t13\t@@@")
    reply = client.read_line()
    check(reply.startswith("FAIL\t13\t") and "base64" in reply, f"malformed base64 in CONT: {reply}")
    client.send("AUTH\t14\tDIGEST-MD5\tservice=smtp")
    check(client.read_line() == "FAIL\t14\treason=Unsupported authentication mechanism", "unknown mechanism")
    client.send(f"AUTH\t16\tPLAIN\tservice=smtp\tresp={plain_response('alice@example.test', 'alice-secret', 'bob@example.test')}")
    reply = client.read_line().split("\t")
    check(reply[:2] == ["FAIL", "16"], f"PLAIN authorizing as another user is refused: {reply}")
    client.send(f"AUTH\t17\tPLAIN\tservice=smtp\tresp={plain_response('alice@example.test', 'alice-secret', 'alice@example.test')}")
    check(client.read_line() == "OK\t17\tuser=alice@example.test", "PLAIN with authzid = authcid is fine")
    client.send("AUTH\t18\tPLAIN\tservice=smtp\tlport=25\trport=4000\tsession=xyz\tvalid-client-cert\t"
                f"no-penalty\tunknown-param=1\tresp={plain_response('alice@example.test', 'alice-secret')}")
    check(client.read_line() == "OK\t18\tuser=alice@example.test", "unknown AUTH parameters are ignored")

    # Many requests in flight on one connection, answered by id.
    batch = ""
    for request_id in range(100, 110):
        password = "alice-secret" if request_id % 2 == 0 else "wrong"
        batch += f"AUTH\t{request_id}\tPLAIN\tservice=smtp\trip=127.0.0.{request_id}\tresp=" \
                 f"{plain_response('alice@example.test', password)}\n"
    client.send_raw(batch.encode())
    replies = {}
    for _ in range(10):
        fields = client.read_line().split("\t")
        replies[int(fields[1])] = fields[0]
    check(replies == {i: ("OK" if i % 2 == 0 else "FAIL") for i in range(100, 110)},
          f"10 pipelined requests answered by id: {replies}")
    client.close()

    # Protocol violations close the connection.
    def closes(what, payload, handshake=True):
        victim = DovecotClient(authd.sasl_socket, timeout=10, handshake=handshake)
        if not handshake:
            victim.read_greeting()
        victim.send_raw(payload)
        check(victim.closed_by_peer(), what)
        victim.close()

    closes("garbage before VERSION disconnects", b"HELLO\tthere\n", handshake=False)
    closes("AUTH before VERSION disconnects", b"AUTH\t1\tPLAIN\tservice=smtp\n", handshake=False)
    closes("major version 2 disconnects", b"VERSION\t2\t0\n", handshake=False)
    closes("a non-numeric id disconnects", b"AUTH\tone\tPLAIN\tservice=smtp\n")
    closes("AUTH without service disconnects", b"AUTH\t1\tPLAIN\n")
    closes("a duplicate active id disconnects", b"AUTH\t1\tLOGIN\tservice=smtp\nAUTH\t1\tLOGIN\tservice=smtp\n")
    closes("an unknown command disconnects", b"RUN\t/bin/sh\n")
    closes("a line over 16 KiB disconnects", b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b"A" * 17000 + b"\n")
    client = DovecotClient(authd.sasl_socket)
    client.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=" + "A" * 16000)
    reply = client.read_line()
    check(reply.startswith("FAIL\t1\t"), "a long line under 16 KiB is read (and fails as bad PLAIN data)")
    client.close()

    # Many connections at once.
    results = []

    def login(index):
        try:
            c = DovecotClient(authd.sasl_socket)
            results.append(auth_plain(c, 1, "alice@example.test", "alice-secret", rip=f"198.51.100.{index}")[0])
            c.close()
        except Exception as error:  # noqa: BLE001 - reported below
            results.append(repr(error))

    threads = [threading.Thread(target=login, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    check(results == ["OK"] * 20, f"20 concurrent connections all log in: {results}")


def throttle_checks(authd):
    client = DovecotClient(authd.sasl_socket)
    timings, replies = [], []
    for attempt in range(20):
        began = time.monotonic()
        replies.append(auth_plain(client, 1000 + attempt, "carol@example.test", f"bad-{attempt}", rip="192.0.2.7"))
        timings.append(time.monotonic() - began)
    rounded = [round(t, 2) for t in timings]
    check(all(r[0] == "FAIL" for r in replies), "20 wrong passwords all fail")
    check(all(t < 0.15 for t in timings[:3]), f"the first 3 failures are answered at once: {rounded}")
    check(0.19 <= timings[3] < 0.6 and 0.39 <= timings[4] and 0.79 <= timings[5], f"then 200, 400, 800 ms: {rounded}")
    check(all(0.99 <= t < 1.6 for t in timings[6:9]), f"capped at failure_delay_max=1s: {rounded}")
    check(all("temp" not in r for r in replies[:10]), "the first 10 failures are not temporary")
    check(all("temp" in r and "reason=too many authentication failures, try again later" in r
              for r in replies[10:]), f"after 10 failures: temporary failure ({replies[10]})")
    check(all(t < 0.15 for t in timings[10:]), f"locked-out requests are answered at once: {rounded}")
    reply = auth_plain(client, 2000, "alice@example.test", "alice-secret", rip="192.0.2.7")
    check(reply[0] == "FAIL" and "temp" in reply, f"even the right password is refused from that IP: {reply}")
    reply = auth_plain(client, 2001, "alice@example.test", "alice-secret", rip="198.51.100.9")
    check(reply[0] == "OK", "other client addresses are not affected")
    lookup = dict(authd.lookup(("op", "verify"), ("user", "alice@example.test"), ("password", "alice-secret"),
                               ("service", "imap"), ("client_ip", "192.0.2.7")))
    check(lookup.get("result") == "tempfail", f"the lookup socket shares the lockout: {lookup}")

    # A delayed answer does not hold up the connection's other requests.
    for attempt in range(4):
        auth_plain(client, 3000 + attempt, "erin@example.test", "bad", rip="203.0.113.5")
    began = time.monotonic()
    client.send(f"AUTH\t3100\tPLAIN\tservice=smtp\trip=203.0.113.5\tresp={plain_response('erin@example.test', 'bad')}")
    client.send(f"AUTH\t3101\tPLAIN\tservice=smtp\trip=203.0.113.6\tresp={plain_response('alice@example.test', 'alice-secret')}")
    first = client.read_line()
    first_time = time.monotonic() - began
    second = client.read_line()
    check(first == "OK\t3101\tuser=alice@example.test" and second.startswith("FAIL\t3100"),
          f"a held failure does not delay the next request: {first!r} after {first_time:.2f}s, then {second!r}")
    client.close()
    log = authd.log()
    check("rip=192.0.2.7 user=<carol@example.test> mech=PLAIN result=fail reason=\"unknown user\" failures=4 delay=200ms"
          in log, "each failure is logged with its count and delay")
    check("lockout started" in log and "192.0.2.7" in log, "the lockout start is logged")
    check("bad-1" not in log, "no password in the log")


def lookup_checks(authd):
    def lookup(*attributes):
        return authd.lookup(*attributes)

    answer = dict(lookup(("op", "verify"), ("user", "ALICE@example.test"), ("password", "alice-secret"),
                         ("service", "imap"), ("client_ip", "127.0.0.1")))
    check(answer == {"result": "ok", "user": "alice@example.test"}, f"verify ok: {answer}")
    answer = dict(lookup(("op", "verify"), ("user", "alice@example.test"), ("password", "nope"),
                         ("service", "imap"), ("client_ip", "127.0.0.1")))
    check(answer.get("result") == "fail" and answer.get("reason") == "Authentication failed", f"verify fail: {answer}")
    answer = dict(lookup(("op", "verify"), ("user", "just-a-name"), ("password", "x"), ("client_ip", "127.0.0.1")))
    check(answer.get("result") == "fail", f"a name without a domain fails, not tempfails: {answer}")
    answer = dict(lookup(("op", "verify"), ("user", "alice@example.test")))
    check(answer.get("result") == "error", f"verify without password is a bad request: {answer}")

    answer = dict(lookup(("op", "user"), ("user", "alice@example.test")))
    check(answer.get("result") == "ok" and answer.get("address") == "alice@example.test"
          and answer.get("mail_path") == os.path.join(authd.data, "mail", "example.test", "alice")
          and answer.get("format") == "maildir" and answer.get("quota") == "0" and answer.get("enabled") == "yes",
          f"user lookup: {answer}")
    answer = dict(lookup(("op", "user"), ("user", "dave@example.test")))
    check(answer.get("enabled") == "no" and answer.get("format") == "mbox" and answer.get("quota") == "5242880",
          f"a disabled mbox user with a quota: {answer}")
    check(answer.get("apop_secret") == "dave-apop", "authd's own uid gets the APOP secret")
    check(dict(lookup(("op", "user"), ("user", "zed@example.test"))).get("result") == "notfound", "unknown user")

    answer = lookup(("op", "resolve"), ("address", "Alice@Example.test"))
    fields = dict(answer)
    check(fields.get("kind") == "local_user" and fields.get("address") == "alice@example.test"
          and fields.get("mail_path", "").endswith("/example.test/alice"), f"resolve a local user: {fields}")
    answer = lookup(("op", "resolve"), ("address", "postmaster@example.test"))
    check(dict(answer).get("kind") == "alias" and [v for k, v in answer if k == "target"] == ["alice@example.test"],
          f"the aliases file is read: {answer}")
    answer = lookup(("op", "resolve"), ("address", "nobody@example.test"))
    check(dict(answer).get("kind") == "unknown_local", f"unknown local: {answer}")
    answer = lookup(("op", "resolve"), ("address", "someone@elsewhere.test"))
    check(dict(answer).get("kind") == "remote", f"remote: {answer}")
    answer = dict(lookup(("op", "resolve"), ("address", "no-at-sign")))
    check(answer.get("result") == "error", f"a malformed address is a bad request: {answer}")
    answer = dict(lookup(("op", "format_disk")))
    check(answer.get("result") == "error", f"an unknown op is refused: {answer}")

    # RFC 1939 §7 APOP, verified inside authd.
    timestamp = "<1896.697170952@dbc.mtview.ca.us>"
    digest = hashlib.md5((timestamp + "bob-apop").encode()).hexdigest()
    answer = dict(lookup(("op", "apop"), ("user", "bob@example.test"), ("timestamp", timestamp), ("digest", digest),
                         ("service", "pop3"), ("client_ip", "127.0.0.1")))
    check(answer.get("result") == "ok" and answer.get("user") == "bob@example.test", f"APOP ok: {answer}")
    answer = dict(lookup(("op", "apop"), ("user", "bob@example.test"), ("timestamp", timestamp),
                         ("digest", "0" * 32), ("service", "pop3"), ("client_ip", "127.0.0.1")))
    check(answer.get("result") == "fail", f"APOP with a wrong digest: {answer}")
    answer = dict(lookup(("op", "apop"), ("user", "alice@example.test"), ("timestamp", timestamp),
                         ("digest", hashlib.md5(timestamp.encode()).hexdigest()), ("client_ip", "127.0.0.1")))
    check(answer.get("result") == "fail", f"APOP for a user without an APOP secret fails: {answer}")

    # Peers other than root, authd's uid, mail_owner and vmail_owner are refused.
    if os.geteuid() == 0:
        outcome = as_nobody(authd, authd.lookup_socket, [("op", "user"), ("user", "dave@example.test")])
        check(outcome == "closed", f"uid 65534 gets nothing from the lookup socket ({outcome})")
        check("lookup: refused peer" in authd.log(), "the refused peer is logged")
    else:
        print("note: not root, the peer check against another uid cannot be exercised here")


def as_nobody(authd, path, attributes):
    """Sends one frame as uid 65534 from a child process: "closed" when
    authd hangs up without answering."""
    for directory in (authd.dir, authd.runtime):
        os.chmod(directory, 0o755)
    os.chmod(path, 0o666)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        outcome = b"?"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(path)
                sock.sendall(encode_frame(attributes))
                outcome = b"closed" if sock.recv(1) == b"" else b"answered"
        except PermissionError:
            outcome = b"no-access"
        except OSError:
            outcome = b"closed"
        os.write(write_end, outcome)
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    outcome = os.read(read_end, 100).decode()
    os.close(read_end)
    return outcome


def admin_checks(authd):
    reply = dict(ipc_call(authd.admin_socket, [("op", "domain_list")]))
    check(reply.get("status") == "ok" and reply.get("domain") == "example.test", f"admin socket answers: {reply}")
    reply = dict(ipc_call(authd.admin_socket, [("op", "explode")]))
    check(reply.get("status") == "error", f"an unknown admin op is an error reply: {reply}")
    authd.admin(("op", "user_passwd"), ("address", "bob@example.test"),
                ("password_hash", sha512_crypt("bob-new")))
    client = DovecotClient(authd.sasl_socket)
    check(auth_plain(client, 1, "bob@example.test", "bob-new", rip="198.51.100.77")[0] == "OK",
          "a password changed through the admin socket works at once")
    client.close()
    if os.geteuid() == 0:
        outcome = as_nobody(authd, authd.admin_socket, [("op", "domain_del"), ("domain", "example.test"),
                                                         ("force", "1")])
        check(outcome == "closed", f"uid 65534 cannot use the admin socket ({outcome})")
        check(dict(ipc_call(authd.admin_socket, [("op", "domain_list")])).get("domain") == "example.test",
              "and changed nothing")


def reload_checks(authd):
    with open(os.path.join(authd.dir, "etc", "aliases"), "w") as f:
        f.write("postmaster: alice\nsales: bob@example.test, alice@example.test\n")
    authd.write_config("failure_delay = 200ms\nfailure_delay_max = 1s\nfailure_free_attempts = 0\n")
    authd.signal(signal.SIGHUP)
    authd.wait_for_log("configuration reloaded", 10)
    answer = authd.lookup(("op", "resolve"), ("address", "sales@example.test"))
    check([v for k, v in answer if k == "target"] == ["bob@example.test", "alice@example.test"],
          f"SIGHUP re-reads the aliases file: {answer}")
    client = DovecotClient(authd.sasl_socket)
    began = time.monotonic()
    auth_plain(client, 1, "frank@example.test", "x", rip="203.0.113.99")
    check(time.monotonic() - began >= 0.19, "SIGHUP applies new throttle settings (no free attempts)")
    client.close()

    with open(os.path.join(authd.dir, "etc", "aliases"), "w") as f:
        f.write("broken line without colon\n")
    authd.signal(signal.SIGHUP)
    authd.wait_for_log("ignoring the file", 10)
    answer = authd.lookup(("op", "resolve"), ("address", "sales@example.test"))
    check(dict(answer).get("kind") == "alias", "a broken aliases file is logged and the loaded aliases kept")
    check(authd.alive(), "authd survives a broken aliases file")


def main():
    aliases = "# classic aliases(5)\npostmaster: alice\n"
    with AuthdAlone("failure_delay = 200ms\nfailure_delay_max = 1s", aliases=aliases) as authd:
        authd.start()
        authd.add_domain("example.test")
        authd.add_user("alice@example.test", "alice-secret")
        authd.add_user("bob@example.test", "bob-secret", apop_secret="bob-apop")
        authd.add_user("dave@example.test", "dave-secret", enabled=False, format="mbox", quota=5242880,
                       apop_secret="dave-apop")
        protocol_checks(authd)
        check("user=<alice@example.test> password hash upgraded to yescrypt" in authd.log(),
              "an imported sha512-crypt hash is upgraded after a good login")
        check(authd.log().count("user=<alice@example.test> password hash upgraded") == 1,
              "the upgrade happens once, not per login")
        throttle_checks(authd)
        lookup_checks(authd)
        admin_checks(authd)
        reload_checks(authd)
        code = authd.stop()
        check(code == 0, f"SIGTERM stops authd cleanly (exit {code})")
        check("stopping" in authd.log(), "authd logs that it stops")

    # A database that cannot be opened is fatal: one line, exit 1.
    with AuthdAlone() as authd:
        with open(authd.config_path, "a") as f:
            f.write("")
        config = open(authd.config_path).read().replace("[authd]", f"auth_db = {authd.dir}/missing/dir/users.sqlite\n[authd]")
        with open(authd.config_path, "w") as f:
            f.write(config)
        try:
            authd.start()
            check(False, "authd must not start without its database")
        except RuntimeError:
            pass
        check(authd.status is not None and os.waitstatus_to_exitcode(authd.status) == 1,
              f"exit status 1 when the database cannot be opened ({authd.status})")
        check("cannot open user database" in authd.log(), "one clear log line says why")

    if failures:
        print(f"{len(failures)} failed", file=sys.stderr)
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()

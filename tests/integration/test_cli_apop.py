"""`facteur user apop` and `facteur user add --apop` with a running authd:
the secret set with the CLI (offline and through authd's admin socket) is the
one authd checks an RFC 1939 §7 APOP digest against, MD5(timestamp + secret)
in hex, over its lookup socket; --clear takes APOP away. The secrets come from
stdin only, are never logged, and bad ones are refused with a clear error."""

import hashlib
import os
import subprocess

from harness import BIN, Instance, check, ipc_call, wait_for

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"  # the RFC 1939 §7 example greeting


def apop(instance, user, secret=None, digest=None, client_ip="127.0.0.1"):
    """authd's answer to an APOP check, as pop3d will ask it."""
    if digest is None:
        digest = hashlib.md5((TIMESTAMP + secret).encode()).hexdigest()
    return dict(ipc_call(instance.lookup_socket, [
        ("op", "apop"), ("user", user), ("timestamp", TIMESTAMP), ("digest", digest),
        ("service", "pop3"), ("client_ip", client_ip)]))


def verify(instance, user, password):
    return dict(ipc_call(instance.lookup_socket, [
        ("op", "verify"), ("user", user), ("password", password), ("service", "pop3"),
        ("client_ip", "127.0.0.1")]))


def cli_without_terminal(instance, *args):
    """The CLI in a new session: no controlling terminal to prompt on."""
    return subprocess.run([os.path.join(BIN, "facteur"), "-c", instance.conf, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, start_new_session=True)


def main():
    with Instance() as instance:
        # authd down: the CLI writes the database itself.
        instance.cli("domain", "add", "example.test", check_rc=0)
        instance.cli("user", "add", "alice@example.test", "--password-stdin", input="alice-pass\n", check_rc=0)
        added = instance.cli("user", "add", "dave@example.test", "--password-stdin", "--apop",
                             input="dave-pass\ndave-apop\n", check_rc=0)
        check(added.stdout.strip() == "user dave@example.test added with an APOP secret",
              f"user add --apop reads the secret as stdin's second line: {added.stdout!r}")
        same = instance.cli("user", "add", "erin@example.test", "--password-stdin", "--apop",
                            input="erin-same\nerin-same\n")
        check(same.returncode == 1 and "must differ from the password" in same.stderr,
              f"an APOP secret equal to the password is refused: {same.stderr.strip()}")
        missing = instance.cli("user", "add", "erin@example.test", "--password-stdin", "--apop", input="erin-pass\n")
        check(missing.returncode == 1 and "empty APOP secret refused" in missing.stderr,
              f"user add --apop without a second line is refused: {missing.stderr.strip()}")
        listed = instance.cli("user", "list", check_rc=0).stdout
        check("erin@example.test" not in listed, "a refused user add --apop adds nobody")
        result = instance.cli("user", "apop", "alice@example.test", "--secret-stdin", input="alice-apop\n",
                              check_rc=0)
        check(result.stdout.strip() == "APOP secret of alice@example.test set",
              f"user apop sets the secret with authd down: {result.stdout!r}")

        started = instance.cli_detached("start")
        check(started == 0, "facteur start succeeds")
        check(wait_for(lambda: "authd" in instance.running_services(), 10), "authd is running after facteur start")
        check(wait_for(lambda: os.path.exists(instance.lookup_socket), 10), "authd's lookup socket is there")

        # RFC 1939 §7: the digest of the greeting's timestamp and the shared secret.
        answer = apop(instance, "dave@example.test", "dave-apop")
        check(answer.get("result") == "ok" and answer.get("user") == "dave@example.test",
              f"the secret from user add --apop verifies an APOP digest: {answer}")
        answer = apop(instance, "alice@example.test", "alice-apop")
        check(answer.get("result") == "ok", f"the secret from user apop verifies an APOP digest: {answer}")
        answer = apop(instance, "Alice@Example.TEST", "alice-apop")
        check(answer.get("result") == "ok", f"the user name is case-insensitive for APOP too: {answer}")
        answer = apop(instance, "alice@example.test", digest=hashlib.md5((TIMESTAMP + "wrong").encode()).hexdigest())
        check(answer.get("result") == "fail", f"a wrong digest is refused: {answer}")
        answer = apop(instance, "dave@example.test", "dave-pass")
        check(answer.get("result") == "fail", f"the password is not the APOP secret: {answer}")
        check(verify(instance, "alice@example.test", "alice-pass").get("result") == "ok",
              "setting the APOP secret leaves the password alone")

        # authd running: the change goes through its admin socket and counts at once.
        result = instance.cli("user", "apop", "alice@example.test", "--secret-stdin", input="alice-new-apop\r\n",
                              check_rc=0)
        check(result.stdout.strip() == "APOP secret of alice@example.test set",
              f"user apop through authd: {result.stdout!r}")
        check("op=user_apop subject=<alice@example.test> status=ok" in instance.log(),
              "authd logs the change with its subject")
        answer = apop(instance, "alice@example.test", "alice-new-apop")
        check(answer.get("result") == "ok", f"the new secret (CRLF line ending stripped) works at once: {answer}")
        answer = apop(instance, "alice@example.test", "alice-apop", client_ip="127.0.0.2")
        check(answer.get("result") == "fail", f"the old secret no longer does: {answer}")

        result = instance.cli("user", "apop", "alice@example.test", "--clear", check_rc=0)
        check(result.stdout.strip() == "APOP secret of alice@example.test cleared",
              f"user apop --clear: {result.stdout!r}")
        answer = apop(instance, "alice@example.test", "alice-new-apop", client_ip="127.0.0.3")
        check(answer.get("result") == "fail", f"after --clear APOP fails: {answer}")
        check(verify(instance, "alice@example.test", "alice-pass").get("result") == "ok",
              "the password still works after --clear")
        check(apop(instance, "dave@example.test", "dave-apop").get("result") == "ok",
              "clearing alice's secret leaves dave's alone")

        # Refusals: clear errors, exit code 1 (2 for a usage error), nothing changed.
        result = instance.cli("user", "apop", "nobody@example.test", "--secret-stdin", input="x-apop\n")
        check(result.returncode == 1 and "user nobody@example.test does not exist" in result.stderr,
              f"an unknown user is refused: {result.stderr.strip()}")
        result = instance.cli("user", "apop", "nobody@example.test", "--clear")
        check(result.returncode == 1 and "does not exist" in result.stderr,
              f"clearing an unknown user's secret is refused: {result.stderr.strip()}")
        result = instance.cli("user", "apop", "dave@example.test", "--secret-stdin", input="tab\there\n")
        check(result.returncode == 1 and "APOP secret contains a control character" in result.stderr,
              f"a control character is refused: {result.stderr.strip()}")
        result = instance.cli("user", "apop", "dave@example.test", "--secret-stdin", input="s" * 257 + "\n")
        check(result.returncode == 1 and "at most 256 bytes" in result.stderr,
              f"an over-long secret is refused: {result.stderr.strip()}")
        result = instance.cli("user", "apop", "dave@example.test", "--secret-stdin", input="\n")
        check(result.returncode == 1 and "empty APOP secret refused" in result.stderr,
              f"an empty secret is refused: {result.stderr.strip()}")
        result = instance.cli("user", "apop", "dave@example.test", "--secret-stdin", "--clear", input="x\n")
        check(result.returncode != 0 and "excludes" in result.stderr,
              f"--clear and --secret-stdin together are a usage error: {result.stderr.strip()}")
        result = cli_without_terminal(instance, "user", "apop", "dave@example.test")
        check(result.returncode == 1 and "no terminal to ask for the APOP secret on; use --secret-stdin"
              in result.stderr, f"without a terminal it points at --secret-stdin: {result.stderr.strip()}")
        check(apop(instance, "dave@example.test", "dave-apop").get("result") == "ok",
              "refused changes leave the secret as it was")

        help_text = instance.cli("user", "apop", "--help", check_rc=0).stdout
        check("clear text" in help_text and "--secret-stdin" in help_text and "--clear" in help_text,
              "user apop --help says the secret is stored in clear text")
        check("--apop" in instance.cli("user", "add", "--help", check_rc=0).stdout, "user add --help shows --apop")

        log = instance.log()
        for secret in ("dave-apop", "alice-apop", "alice-new-apop"):
            check(secret not in log, f"the secret {secret} is never logged")

        stopped = instance.cli("stop")
        check(stopped.returncode == 0, f"facteur stop succeeds ({stopped.stderr.strip()})")
        check(wait_for(lambda: not instance.instance_processes(), 10), "nothing is left after facteur stop")


if __name__ == "__main__":
    main()
    print("1 passed, 0 failed")

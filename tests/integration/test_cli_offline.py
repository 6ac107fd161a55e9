"""facteur(8) with nothing running: configuration commands, and domain, user
and alias management writing the user database directly (DESIGN §3: only
authd writes it while it runs, so with authd down the CLI opens it itself).
The stored hashes are checked with Python's own sqlite3, not our code."""

import os
import pty
import pwd
import select
import shutil
import sqlite3
import subprocess
import tempfile

from harness import BIN, check, fail

FACTEUR = os.path.join(BIN, "facteur")


class Offline:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="facteur-cli-")
        self.conf = os.path.join(self.dir, "facteur.conf")
        self.database = os.path.join(self.dir, "data", "auth", "users.sqlite")
        with open(self.conf, "w") as f:
            f.write(f"""# written by test_cli_offline.py
config_directory = {self.dir}
data_dir = {self.dir}/data
runtime_dir = {self.dir}/run
spool_dir = {self.dir}/spool
mail_dir = {self.dir}/mail
daemon_directory = {BIN}
log_target = stderr
""")

    def run(self, *args, input=None, rc=None, config=True, env=None):
        argv = [FACTEUR] + (["-c", self.conf] if config else []) + list(args)
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60,
                                env=env, stdin=None if input is not None else subprocess.DEVNULL,
                                start_new_session=True)  # no controlling terminal: never prompts
        if rc is not None and result.returncode != rc:
            fail(f"facteur {' '.join(args)} exited {result.returncode}, wanted {rc}\n"
                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def hashes(self):
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            return {f"{localpart}@{domain}": password_hash for localpart, domain, password_hash in
                    connection.execute("SELECT localpart, domain, password_hash FROM users")}
        finally:
            connection.close()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def test_usage_and_version(t):
    result = t.run("--version", rc=0)
    check(result.stdout.startswith("facteur "), "facteur --version prints the version")
    result = t.run("--help", rc=0)
    check("domain" in result.stdout and "user" in result.stdout, "facteur --help lists the commands")
    for command in (["domain"], ["user"], ["alias"], ["config"], ["user", "add"]):
        result = t.run(*command, "--help", rc=0)
        check("Usage" in result.stdout or "usage" in result.stdout, f"facteur {' '.join(command)} --help")
    result = t.run("frobnicate", rc=2)
    check(result.stderr.strip() != "", "an unknown command is a usage error (exit 2) with a message")
    t.run("user", "add", rc=2)
    t.run("domain", rc=2)
    t.run("user", "add", "x@example.test", "--format", "mh", rc=2)


def test_config(t):
    result = t.run("config", "check", rc=0)
    check("facteur.conf: ok" in result.stdout, "config check says the file is ok")

    result = t.run("config", "show", "-n", rc=0)
    shown = result.stdout
    check(f"data_dir = {t.dir}/data" in shown, "config show -n shows what the file sets")
    check("auth_db" not in shown, "config show -n leaves out defaults")
    result = t.run("config", "show", rc=0)
    check(f"auth_db = {t.dir}/data/auth/users.sqlite" in result.stdout,
          "config show prints defaults with $name expanded")

    # FACTEUR_CONFIG is used when -c is absent.
    env = dict(os.environ, FACTEUR_CONFIG=t.conf)
    result = t.run("config", "check", config=False, env=env, rc=0)
    check(t.conf in result.stdout, "FACTEUR_CONFIG names the configuration file")

    bad = os.path.join(t.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("# comment\nlog_target = stderr\n\nno_such_parameter = 1\n")
    result = subprocess.run([FACTEUR, "-c", bad, "config", "check"], capture_output=True, text=True, timeout=60)
    check(result.returncode == 1, "config check exits 1 for an unknown key")
    check(f"{bad}:4" in result.stderr and "no_such_parameter" in result.stderr,
          f"the error names file and line: {result.stderr.strip()}")
    result = subprocess.run([FACTEUR, "-c", bad, "domain", "list"], capture_output=True, text=True, timeout=60)
    check(result.returncode == 1 and "no_such_parameter" in result.stderr,
          "other commands refuse a bad configuration too")
    result = t.run("config", "check", config=False,
                   env=dict(os.environ, FACTEUR_CONFIG=os.path.join(t.dir, "missing.conf")))
    check(result.returncode == 1 and "missing.conf" in result.stderr, "a missing file is reported")


def test_domains(t):
    t.run("domain", "add", "example.test", rc=0)
    check(os.path.exists(t.database), "the user database is created on first use")
    check(os.stat(t.database).st_mode & 0o777 == 0o600, "the user database has mode 0600")
    if os.geteuid() == 0:
        owner = pwd.getpwuid(os.stat(t.database).st_uid).pw_name
        check(owner == "facteur-auth", f"run as root, the database is given to auth_owner ({owner})")
    t.run("domain", "add", "Other.TEST", rc=0)
    t.run("domain", "add", "temp.test", rc=0)
    result = t.run("domain", "add", "example.test", rc=1)
    check("example.test" in result.stderr, f"adding a domain twice fails: {result.stderr.strip()}")
    result = t.run("domain", "add", "bad domain!", rc=1)
    check(result.stderr.startswith("facteur: "), "an invalid domain name is refused with one line")
    result = t.run("domain", "list", rc=0)
    check(result.stdout.split() == ["example.test", "other.test", "temp.test"], f"domain list: {result.stdout!r}")

    t.run("domain", "del", "temp.test", rc=0)
    t.run("user", "add", "someone@other.test", "--password-stdin", input="pw\n", rc=0)
    t.run("alias", "add", "list@other.test", "someone@other.test", rc=0)
    result = t.run("domain", "del", "other.test", rc=1)
    check(result.stderr.strip() != "", "a domain with users is not deleted without --force")
    t.run("domain", "del", "other.test", "--force", rc=0)
    result = t.run("domain", "list", rc=0)
    check(result.stdout.split() == ["example.test"], "domain del (with and without --force) removed them")
    check("someone@other.test" not in t.hashes(), "--force deleted the domain's users")
    t.run("domain", "del", "nowhere.test", rc=1)


def test_users(t):
    t.run("user", "add", "alice@example.test", "--password-stdin", input="alice-secret\n", rc=0)
    t.run("user", "add", "Bob@Example.Test", "--password-stdin", "--quota", "1G", "--format", "mbox",
          "--disabled", input="bob-secret\r\n", rc=0)
    result = t.run("user", "add", "alice@example.test", "--password-stdin", input="other\n", rc=1)
    check("already exists" in result.stderr, f"a duplicate user is refused: {result.stderr.strip()}")
    result = t.run("user", "add", "carol@example.test", "--password-stdin", input="\n", rc=1)
    check("empty" in result.stderr, "an empty password is refused")
    result = t.run("user", "add", "carol@example.test", "--password-stdin", input="x" * 5000 + "\n", rc=1)
    check("too long" in result.stderr, "an over-long password is refused")
    result = t.run("user", "add", "carol@example.test", rc=1)
    check("password-stdin" in result.stderr, "without a terminal, the CLI says to use --password-stdin")
    result = t.run("user", "add", "dave@nowhere.test", "--password-stdin", input="pw\n", rc=1)
    check("nowhere.test" in result.stderr, "a user in an unknown domain is refused")
    result = t.run("user", "add", "erin@example.test", "--password-stdin", "--quota", "lots", input="pw\n", rc=1)
    check("quota" in result.stderr, "a bad --quota is refused")

    hashes = t.hashes()
    check(set(hashes) == {"alice@example.test", "bob@example.test"}, f"users stored lowercased: {sorted(hashes)}")
    check(all(h.startswith("$y$") for h in hashes.values()), "passwords are stored as yescrypt $y$ hashes")
    check(hashes["alice@example.test"] != hashes["bob@example.test"], "each hash has its own salt")
    check(not any("secret" in h for h in hashes.values()), "no plaintext in the database")

    result = t.run("user", "list", rc=0)
    rows = [line.split() for line in result.stdout.splitlines()]
    check(rows[0] == ["ADDRESS", "FORMAT", "QUOTA", "ENABLED"], f"user list has a header: {rows[0]}")
    check(["alice@example.test", "maildir", "unlimited", "yes"] in rows, f"user list shows alice: {rows}")
    check(["bob@example.test", "mbox", "1G", "no"] in rows, f"user list shows bob's options: {rows}")
    result = t.run("user", "list", "nowhere.test")
    check(len(result.stdout.splitlines()) <= 1, "user list of another domain shows nobody")

    before = t.hashes()["alice@example.test"]
    t.run("user", "passwd", "alice@example.test", "--password-stdin", input="new-secret\n", rc=0)
    after = t.hashes()["alice@example.test"]
    check(after != before and after.startswith("$y$"), "user passwd stores a new yescrypt hash")
    t.run("user", "passwd", "nobody@example.test", "--password-stdin", input="pw\n", rc=1)

    t.run("user", "enable", "bob@example.test", rc=0)
    t.run("user", "quota", "bob@example.test", "500M", rc=0)
    rows = [line.split() for line in t.run("user", "list", "example.test", rc=0).stdout.splitlines()]
    check(["bob@example.test", "mbox", "500M", "yes"] in rows, f"user enable and user quota: {rows}")
    t.run("user", "disable", "bob@example.test", rc=0)

    t.run("user", "del", "bob@example.test", rc=0)
    t.run("user", "del", "bob@example.test", rc=1)
    check(set(t.hashes()) == {"alice@example.test"}, "user del removed bob")


def run_on_terminal(t, args, answers):
    """Runs facteur on a fresh pseudo-terminal (its controlling tty), answering
    each prompt; returns (exit code, everything it showed on the terminal)."""
    pid, master_fd = pty.fork()
    if pid == 0:
        os.execv(FACTEUR, [FACTEUR, "-c", t.conf] + list(args))
    shown, pending = b"", list(answers)
    while True:
        ready, _, _ = select.select([master_fd], [], [], 30)
        if not ready:
            os.kill(pid, 9)
            fail(f"facteur {' '.join(args)} hung on the terminal; it showed {shown!r}")
        try:
            chunk = os.read(master_fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if pending and shown.count(b": ") > len(answers) - len(pending) and shown.rstrip().endswith(b":"):
            os.write(master_fd, pending.pop(0).encode() + b"\n")
    os.close(master_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_terminal_prompt(t):
    code, shown = run_on_terminal(t, ["user", "add", "tty@example.test"], ["tty-secret", "tty-secret"])
    check(code == 0, f"user add asks for the password on the terminal: {shown!r}")
    check("Password for tty@example.test:" in shown and "Retype" in shown, "the password is asked twice")
    check("tty-secret" not in shown, "the password is not echoed")
    check(t.hashes()["tty@example.test"].startswith("$y$"), "the prompted password is stored hashed")
    code, shown = run_on_terminal(t, ["user", "passwd", "tty@example.test"], ["one", "two"])
    check(code == 1 and "do not match" in shown, f"different answers are refused: {shown!r}")
    t.run("user", "del", "tty@example.test", rc=0)


def test_aliases(t):
    t.run("alias", "add", "team@example.test", "alice@example.test", "someone@elsewhere.test", rc=0)
    t.run("alias", "add", "log@example.test", "|/usr/bin/logger -t mail", rc=0)
    result = t.run("alias", "add", "x@nowhere.test", "alice@example.test", rc=1)
    check(result.stderr.strip() != "", "an alias outside the local domains is refused")
    result = t.run("alias", "list", rc=0)
    lines = result.stdout.splitlines()
    check("team@example.test: alice@example.test, someone@elsewhere.test" in lines, f"alias list: {lines}")
    check('log@example.test: "|/usr/bin/logger -t mail"' in lines, "pipe targets are quoted in alias list")
    t.run("alias", "del", "team@example.test", "someone@elsewhere.test", rc=0)
    lines = t.run("alias", "list", rc=0).stdout.splitlines()
    check("team@example.test: alice@example.test" in lines, "alias del with a target removes only that one")
    t.run("alias", "del", "team@example.test", rc=0)
    t.run("alias", "del", "log@example.test", rc=0)
    check(t.run("alias", "list", rc=0).stdout.strip() == "", "alias del without a target removes the alias")


def test_service_when_stopped(t):
    result = t.run("status")
    check(result.returncode == 3, "status exits 3 when nothing runs")
    check("not running" in result.stderr, "status says facteur is not running")
    result = t.run("stop")
    check(result.returncode == 1 and "not running" in result.stderr, "stop fails when nothing runs")
    result = t.run("reload")
    check(result.returncode == 1 and "not running" in result.stderr, "reload fails when nothing runs")


def main():
    if not os.access(FACTEUR, os.X_OK):
        fail(f"{FACTEUR} is not built")
    t = Offline()
    try:
        test_usage_and_version(t)
        test_config(t)
        test_domains(t)
        test_users(t)
        test_terminal_prompt(t)
        test_aliases(t)
        test_service_when_stopped(t)
    finally:
        t.cleanup()
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()

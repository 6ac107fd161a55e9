"""Runs authd by itself, without master: a temp dir with a facteur.conf, the
three listening Unix sockets bound here and handed to authd at descriptors
3, 4, 5 (FACTEUR_LISTEN_FDS / FACTEUR_LISTEN_NAMES, as master does), users
added through authd's admin socket. Used by the authd integration tests;
run directly (python3 run_authd_alone.py) it starts authd with one user and
prints the socket paths until interrupted.

Not a test itself (no test_ prefix): a helper with no dependency on the
suite's master-based harness.
"""

import base64
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SOCKET_NAMES = ("sasl", "lookup", "admin")


def authd_binary():
    bin_dir = os.environ.get("FACTEUR_BIN")
    if not bin_dir:
        here = os.path.dirname(os.path.abspath(__file__))
        bin_dir = os.path.join(here, "..", "..", "build", "bin")
    path = os.path.join(bin_dir, "authd")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"FAIL: no authd binary at {path} (set FACTEUR_BIN)")
    return path


# ipc frames (libmail/ipc.hpp), written in the harness independently of libmail.
from harness import decode_frame, encode_frame, ipc_call  # noqa: E402,F401


def sha512_crypt(password):
    """A "$6$" hash from openssl passwd -6, as an imported Dovecot/Postfix
    user would have."""
    result = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()


# Dovecot auth-client protocol, as Postfix's xsasl_dovecot_server speaks it.
from harness import DovecotAuthClient as DovecotClient  # noqa: E402,F401


def plain_response(user, password, authzid=""):
    return base64.b64encode(authzid.encode() + b"\0" + user.encode() + b"\0" + password.encode()).decode()


class AuthdAlone:
    """authd started by hand in a temp dir; a context manager."""

    def __init__(self, authd_config="", aliases=None):
        self.dir = tempfile.mkdtemp(prefix="facteur-authd-")
        self.runtime = os.path.join(self.dir, "run")
        self.data = os.path.join(self.dir, "data")
        for sub in (self.runtime, os.path.join(self.data, "auth"), os.path.join(self.data, "mail"),
                    os.path.join(self.dir, "spool"), os.path.join(self.dir, "etc")):
            os.makedirs(sub, exist_ok=True)
        if aliases is not None:
            with open(os.path.join(self.dir, "etc", "aliases"), "w") as f:
                f.write(aliases)
        self.config_path = os.path.join(self.dir, "etc", "facteur.conf")
        self.write_config(authd_config)
        self.sasl_socket = os.path.join(self.runtime, "auth-client")
        self.lookup_socket = os.path.join(self.runtime, "auth-lookup")
        self.admin_socket = os.path.join(self.runtime, "auth-admin")
        self.log_path = os.path.join(self.dir, "authd.log")
        self.pid = None
        self.status = None

    def write_config(self, authd_config):
        with open(self.config_path, "w") as f:
            f.write(f"""# written by run_authd_alone.py
config_directory = {self.dir}/etc
data_dir = {self.data}
spool_dir = {self.dir}/spool
runtime_dir = {self.runtime}
mail_owner = {os.environ.get("USER", "root")}
log_target = stderr
log_level = info

[authd]
{authd_config}
""")

    def start(self):
        listeners = []
        for path in (self.sasl_socket, self.lookup_socket, self.admin_socket):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(64)
            listeners.append(sock)
        # Move the sockets out of the way of descriptors 3..5 first, so the
        # dup2s below cannot overwrite one another; the copies are CLOEXEC.
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100) for s in listeners]
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        actions = [(os.POSIX_SPAWN_DUP2, log, 2)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, fd in enumerate(high)]
        # FACTEUR_LISTEN_FDS holds the count, like systemd's LISTEN_FDS.
        env = dict(os.environ, FACTEUR_LISTEN_FDS=str(len(SOCKET_NAMES)),
                   FACTEUR_LISTEN_NAMES=",".join(SOCKET_NAMES))
        env.pop("FACTEUR_CONFIG", None)
        binary = authd_binary()
        self.pid = os.posix_spawn(binary, [binary, "-c", self.config_path], env, file_actions=actions)
        for fd in high + [log]:
            os.close(fd)
        for sock in listeners:
            sock.close()
        self.wait_for_log("ready", 30)
        return self

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        if self.pid is None or self.status is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.status = status
        return False

    def wait_for_log(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                raise RuntimeError(f"authd exited ({self.status}) before logging {text!r}:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"authd did not log {text!r} within {timeout}s:\n{self.log()}")

    def signal(self, signo):
        os.kill(self.pid, signo)

    def stop(self, timeout=10):
        """SIGTERM; returns the exit code (killing after the timeout)."""
        if self.pid is None:
            return None
        if self.status is None:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.status is None:
                os.kill(self.pid, signal.SIGKILL)
                _, self.status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(self.status)

    def admin(self, *attributes):
        reply = dict(ipc_call(self.admin_socket, list(attributes)))
        if reply.get("status") != "ok":
            raise RuntimeError(f"admin {attributes[0]}: {reply}")
        return reply

    def add_domain(self, domain):
        return self.admin(("op", "domain_add"), ("domain", domain))

    def add_user(self, address, password, password_hash=None, **options):
        attributes = [("op", "user_add"), ("address", address),
                      ("password_hash", password_hash or sha512_crypt(password)),
                      ("quota", str(options.get("quota", 0))), ("format", options.get("format", "maildir")),
                      ("enabled", "1" if options.get("enabled", True) else "0")]
        if "apop_secret" in options:
            attributes.append(("apop_secret", options["apop_secret"]))
        return self.admin(*attributes)

    def lookup(self, *attributes):
        return ipc_call(self.lookup_socket, list(attributes))

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.stop()
        if kind is not None:
            sys.stderr.write("--- authd log ---\n" + self.log())
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    with AuthdAlone() as authd:
        authd.start()
        authd.add_domain("example.test")
        authd.add_user("alice@example.test", "alice-secret")
        print(f"authd pid {authd.pid} in {authd.dir}")
        print(f"  sasl   {authd.sasl_socket}\n  lookup {authd.lookup_socket}\n  admin  {authd.admin_socket}")
        print("user alice@example.test / alice-secret; Ctrl-C stops")
        try:
            while authd.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

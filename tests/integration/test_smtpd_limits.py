"""smtpd's limits and start-up rules (DESIGN §5): idle timeout (421 4.4.2),
error limit (421 4.7.0), per-client-IP limit (421 4.7.0 at the greeting),
recipient limit (452 4.5.3), authd unreachable (451 4.3.0), SIGTERM (421
4.3.2, exit 0), and refusal to start with an open-relay mynetworks or a
submission socket without TLS. Most checks run one smtpd alone, handed a
listening socket the way master does (descriptor 3, FACTEUR_LISTEN_*)."""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import RawSMTP as Raw, check, wait_for  # noqa: E402


class Standalone:
    """One smtpd process with a loopback listening socket at fd 3."""

    def __init__(self, directory, section_lines, service="smtpd", socket_name="smtp.0", global_lines=""):
        self.directory = directory
        self.conf = os.path.join(directory, "smtpd-%s.conf" % socket_name)
        with open(self.conf, "w") as f:
            f.write(f"""log_target = stderr
log_level = debug
myhostname = mx.example.test
spool_dir = {directory}/spool
runtime_dir = {directory}/run
{global_lines}
[{service}]
{section_lines}
""")
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        env = dict(os.environ, FACTEUR_LISTEN_FDS="1", FACTEUR_LISTEN_NAMES=socket_name, FACTEUR_SERVICE=service)
        # A descriptor well above 3, so the shell's "3<&N N<&-" cannot close it.
        fd = fcntl.fcntl(self.listener.fileno(), fcntl.F_DUPFD, 5)  # dash takes one-digit descriptors
        self.log_path = os.path.join(directory, "smtpd-%s.log" % socket_name)
        self.log_file = open(self.log_path, "wb")
        # The shell moves the socket to descriptor 3, as master does.
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", 'exec "$0" -c "$1" 3<&%d %d<&-' % (fd, fd), os.path.join(harness.BIN, "smtpd"),
             self.conf], env=env, stdout=self.log_file, stderr=subprocess.STDOUT, pass_fds=(fd,))
        self.listener.close()
        os.close(fd)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_ready(self):
        return wait_for(lambda: "ready pid=" in self.log() or self.process.poll() is not None, 20) and \
            self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def main():
    directory = tempfile.mkdtemp(prefix="facteur-smtpd-limits-")
    started = []
    try:
        os.makedirs(os.path.join(directory, "spool"))
        os.makedirs(os.path.join(directory, "run"))

        # --- Refusals to start (DESIGN §5: never an open relay).
        for network in ("0.0.0.0/0", "::/0", "127.0.0.0/8 [::]/0"):
            bad = Standalone(directory, "mynetworks = " + network)
            started.append(bad)
            code = bad.process.wait(20)
            check(code == 1 and "relay for everyone" in bad.log(),
                  "mynetworks = %s: smtpd exits 1 with one clear line" % network)
        no_tls = Standalone(directory, "", service="submission", socket_name="submission.0")
        started.append(no_tls)
        check(no_tls.process.wait(20) == 1 and "needs TLS" in no_tls.log(),
              "submission socket without TLS: exit 1")

        # --- One smtpd with small limits and no authd behind it.
        server = Standalone(directory, "idle_timeout = 2s\nclient_connection_limit = 3\nerror_limit = 3")
        started.append(server)
        check(server.wait_ready(), "standalone smtpd ready")
        port = server.port

        raw = Raw(port)
        check(raw.code().startswith("220 mx.example.test ESMTP facteur"), "greeting")
        raw.cmd("EHLO client.test")
        check(raw.cmd("MAIL FROM:<a@remote.test>").startswith("250"), "MAIL")
        check(raw.cmd("RCPT TO:<bob@example.test>").startswith("451 4.3.0"), "authd unreachable: 451 4.3.0")
        check(raw.cmd("RSET").startswith("250"), "session goes on")

        # error_limit = 3: the third error closes with 421 4.7.0.
        errors = Raw(port)
        errors.code()
        check(errors.cmd("BOGUS1").startswith("500 5.5.2"), "first error")
        check(errors.cmd("BOGUS2").startswith("500 5.5.2"), "second error")
        check(errors.cmd("BOGUS3").startswith("500 5.5.2"), "third error replied")
        check(errors.code() == "421 4.7.0 mx.example.test Error: too many errors", "then 421 4.7.0")
        check(errors.closed(), "and the connection closed")

        # client_connection_limit = 3 per IP (raw is still open).
        extra = [Raw(port), Raw(port)]
        for client in extra:
            check(client.code().startswith("220"), "connection within the per-IP limit")
        over = Raw(port)
        check(over.code().startswith("421 4.7.0"), "connection over client_connection_limit: 421 4.7.0")
        check(over.closed(), "and closed")

        # idle_timeout = 2s.
        started_at = time.monotonic()
        check(raw.code() == "421 4.4.2 mx.example.test Error: timeout exceeded", "idle client: 421 4.4.2")
        check(raw.closed() and time.monotonic() - started_at < 10, "closed after the idle timeout")
        for client in extra:
            client.code()
        check(wait_for(lambda: server.log().count("disconnect from") >= 4, 10), "sessions gone")

        # A half-closed client is cleaned up (its pending reply still goes out).
        half = Raw(port)
        half.code()
        half.sock.sendall(b"NOOP\r\n")
        half.sock.shutdown(socket.SHUT_WR)
        check(half.code().startswith("250"), "reply to a half-closed client")
        check(half.closed(), "half-closed session cleaned up")

        # SIGTERM: open sessions get 421 4.3.2, the process exits 0.
        open_session = Raw(port)
        open_session.code()
        server.process.send_signal(signal.SIGTERM)
        check(open_session.code().startswith("421 4.3.2"), "SIGTERM: 421 4.3.2 to open sessions")
        check(server.process.wait(20) == 0, "SIGTERM: exit 0")
        check("AddressSanitizer" not in server.log() and "runtime error:" not in server.log(),
              "no sanitizer report (leaks included) from the standalone smtpd")

        # --- Through master, with authd: recipient limit and mynetworks relay.
        with harness.MailInstance(smtpd_config="[smtpd]\nrecipient_limit = 2",
                                  sections="enabled = no\n[deliverd]\nenabled = no") as inst:
            inst.start(wait_services=("authd", "smtpd", "submission"))
            raw = Raw(inst.smtp_port)
            raw.code()
            raw.cmd("EHLO trusted.test")
            raw.cmd("MAIL FROM:<a@example.test>")
            check(raw.cmd("RCPT TO:<far@remote.test>").startswith("250 2.1.5"),
                  "127.0.0.1 is in the default mynetworks: relaying allowed")
            check(raw.cmd("RCPT TO:<user%remote.test@example.test>").startswith("550 5.7.1"),
                  "a disguised relay to a local domain is refused even to mynetworks")
            check(raw.cmd("RCPT TO:<alice@example.test>").startswith("250 2.1.5"), "second recipient")
            check(raw.cmd("RCPT TO:<bob@example.test>").startswith("452 4.5.3"), "third recipient: 452 4.5.3")
            raw.cmd("QUIT")
            inst.stop()
            check("AddressSanitizer" not in inst.log() and "runtime error:" not in inst.log(),
                  "no sanitizer report from the daemons")
        print("all smtpd limit checks passed")
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

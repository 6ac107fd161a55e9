"""Starts a real facteur instance from the build tree in a temp dir, on
loopback and Unix sockets only, and gives tests independent clients for it:
our ipc frames and Dovecot's auth-client protocol are re-implemented here in
Python from their specs, never by calling facteur's own client code."""

import base64
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("FACTEUR_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "test", "bin")
BIN = os.path.abspath(BIN)


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print("ok - " + message)


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


# --- ipc frames (DESIGN §4): u32 length, u8 version 1, then
# (u32 name length, name, u32 value length, value)*.
def encode_frame(attributes):
    body = bytes([1])
    for name, value in attributes:
        name = name.encode() if isinstance(name, str) else name
        value = value.encode() if isinstance(value, str) else value
        body += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return struct.pack(">I", len(body)) + body


def parse_frame(data):
    """An ipc frame (u32 length, version 1, then name/value pairs) that must
    fill `data` exactly; returns a list of (name, bytes). Values may hold
    nested frames (queue file envelopes, delivery requests)."""
    if len(data) < 5:
        raise ValueError("frame too short")
    (length,) = struct.unpack(">I", data[:4])
    if length != len(data) - 4 or data[4] != 1:
        raise ValueError("bad frame length or version")
    attributes, position = [], 5
    while position < len(data):
        (n,) = struct.unpack(">I", data[position:position + 4])
        name = data[position + 4:position + 4 + n].decode()
        position += 4 + n
        (v,) = struct.unpack(">I", data[position:position + 4])
        value = data[position + 4:position + 4 + v]
        if len(value) != v:
            raise ValueError("truncated attribute")
        position += 4 + v
        attributes.append((name, value))
    return attributes


def read_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def decode_frame(sock):
    (length,) = struct.unpack(">I", read_exact(sock, 4))
    body = read_exact(sock, length)
    if body[0] != 1:
        raise ValueError("bad frame version")
    attributes, position = [], 1
    while position < len(body):
        (n,) = struct.unpack(">I", body[position:position + 4])
        name = body[position + 4:position + 4 + n].decode()
        position += 4 + n
        (v,) = struct.unpack(">I", body[position:position + 4])
        value = body[position + 4:position + 4 + v]
        position += 4 + v
        attributes.append((name, value.decode(errors="replace")))
    return attributes


def ipc_call(path, attributes, timeout=30):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode_frame(attributes))
        return decode_frame(sock)


# --- Dovecot auth-client protocol (what Postfix's xsasl_dovecot client does).
class DovecotAuthClient:
    """A client of authd's SASL socket, speaking what Postfix's
    xsasl_dovecot_server client speaks. With handshake=False it connects
    without sending VERSION/CPID, for tests of misbehaving clients."""

    def __init__(self, path, timeout=30, handshake=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.next_id = 1
        # The server's greeting lines, VERSION to DONE.
        self.handshake = self.greeting = []
        self.mechanisms = []
        if handshake:
            self.sock.sendall(b"VERSION\t1\t0\nCPID\t%d\n" % os.getpid())
            self.read_greeting()

    def read_greeting(self):
        while True:
            line = self.read_line()
            self.greeting.append(line)
            if line == "DONE":
                break
        self.mechanisms = [l.split("\t")[1] for l in self.greeting if l.startswith("MECH\t")]
        return self.greeting

    def read_line(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("authd closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def closed_by_peer(self):
        """True when authd closes the connection (after draining any output)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def auth_plain(self, user, password, rip="127.0.0.1", service="smtp", secured=True):
        request_id = self.next_id
        self.next_id += 1
        response = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        params = ["service=" + service, "nologin", "lip=127.0.0.1", "rip=" + rip]
        if secured:
            params.append("secured")
        self.send("AUTH\t%d\tPLAIN\t%s\tresp=%s" % (request_id, "\t".join(params), response))
        return self.read_line().split("\t")

    def close(self):
        self.sock.close()


class RawLineClient:
    """Bytes out, CRLF-terminated lines in, over a port on 127.0.0.1 or an
    already connected (maybe TLS) socket: what RawSMTP and RawPOP3 share."""

    def __init__(self, port_or_socket, timeout=10):
        if isinstance(port_or_socket, int):
            self.sock = socket.create_connection(("127.0.0.1", port_or_socket), timeout=timeout)
        else:
            self.sock = port_or_socket
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def raw_line(self):
        """The next line without its CRLF, as bytes."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed; buffered %r" % self.buffer[:200])
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def closed(self, timeout=5):
        """True when the server closes the connection (after its output)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class RawSMTP(RawLineClient):
    """A raw SMTP client: bytes out, whole (multi-line) replies in. Takes a
    port on 127.0.0.1 or an already connected (maybe TLS) socket."""

    def line(self):
        return self.raw_line().decode(errors="replace")

    def reply(self):
        """Every line of the next reply."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def code(self):
        """The last line of the next reply: "250 2.1.0 Ok"."""
        return self.reply()[-1]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.code()


def tls_context():
    """A client TLS context for the test instances' self-signed certificate."""
    import ssl
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instance:
    """A facteur instance: config, directories and a master in a temp dir."""

    def __init__(self, authd_config="", global_config="", sections="", smtpd_listen=None, command_prefix=None):
        self.dir = tempfile.mkdtemp(prefix="facteur-test-")
        # Loopback only, on ports nobody else uses (DESIGN §8). The lab
        # (lab.py) gives its hosts their own addresses and port 25 instead.
        self.smtp_port = free_port()
        self.smtpd_listen = smtpd_listen or [f"127.0.0.1:{self.smtp_port}"]
        # Wraps the master command, e.g. ["ip", "netns", "exec", ns] (lab.py).
        self.command_prefix = list(command_prefix or [])
        # Daemons dropped to facteur-auth etc. (when tests run as root) must
        # be able to reach their directories.
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "facteur.conf")
        self.log_path = os.path.join(self.dir, "master.log")
        self.runtime = os.path.join(self.dir, "run")
        with open(self.conf, "w") as f:
            f.write(f"""config_directory = {self.dir}
daemon_directory = {BIN}
data_dir = {self.dir}/data
spool_dir = {self.dir}/spool
runtime_dir = {self.runtime}
log_target = stderr
log_level = debug
service_fast_exit_time = 1s
service_fast_exit_limit = 3
service_throttle_time = 30s
service_stop_timeout = 5s
# Hermetic (DESIGN §8): relayd's DNS goes to a closed loopback port, never
# to the machine's resolver; lookups fail at once as temporary errors. The
# lab (lab.py) points it at its own DNS server.
dns_resolvers = 127.0.0.1:1
{global_config}
[authd]
failure_free_attempts = 3
failure_delay = 200ms
failure_delay_max = 400ms
failure_lockout_count = 10
failure_lockout_time = 60s
{authd_config}
[smtpd]
listen = {" ".join(self.smtpd_listen)}
[submission]
enabled = no
[pop3d]
enabled = no
{sections}
""")
        self.master = None
        self.log_file = None

    @property
    def sasl_socket(self):
        return os.path.join(self.runtime, "auth-client")

    @property
    def lookup_socket(self):
        return os.path.join(self.runtime, "auth-lookup")

    @property
    def control_socket(self):
        return os.path.join(self.runtime, "master.sock")

    def cli(self, *args, input=None, check_rc=None):
        result = subprocess.run([os.path.join(BIN, "facteur"), "-c", self.conf, *args],
                                input=input, capture_output=True, text=True, timeout=60)
        if check_rc is not None and result.returncode != check_rc:
            fail(f"facteur {' '.join(args)} exited {result.returncode}, wanted {check_rc}\n"
                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def cli_detached(self, *args):
        """Runs a CLI command that may leave a daemon behind (facteur start):
        its output goes to the instance log so no pipe is held open."""
        with open(self.log_path, "ab") as log:
            return subprocess.run([os.path.join(BIN, "facteur"), "-c", self.conf, *args],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=60).returncode

    def start(self, wait_services=("authd",)):
        self.log_file = open(self.log_path, "ab")
        self.master = subprocess.Popen([*self.command_prefix, os.path.join(BIN, "master"), "-c", self.conf],
                                       stdout=self.log_file, stderr=subprocess.STDOUT)
        running = wait_for(lambda: self.running_services() >= set(wait_services), 20)
        if not running:
            fail("instance did not come up; log:\n" + self.log())

    def status(self):
        """Rows of master's status reply, via its control socket."""
        try:
            reply = ipc_call(self.control_socket, [("command", "status")], timeout=5)
        except OSError:
            return None
        rows = []
        for name, value in reply:
            if name == "service":
                rows.append({"service": value})
            elif rows:
                rows[-1][name] = value
        return rows

    def running_services(self):
        rows = self.status() or []
        return {r["service"] for r in rows if r.get("state") == "running" and int(r.get("pid", 0)) > 0}

    def pids(self, service):
        rows = self.status() or []
        return sorted(int(r["pid"]) for r in rows
                      if r["service"] == service and r.get("state") == "running" and int(r["pid"]) > 0)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def instance_processes(self):
        """Every process on the machine started for this instance's config."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and self.conf.encode() in cmdline:
                found.append(int(entry))
        return found

    def stop(self):
        if self.master and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
            try:
                self.master.wait(30)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        for pid in self.instance_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def cleanup(self):
        self.stop()
        if os.environ.get("FACTEUR_KEEP_TEST_DIR"):
            print("kept " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        failed = kind is not None and not (isinstance(value, SystemExit) and value.code in (0, None))
        if failed:
            print("master log:\n" + self.log(), file=sys.stderr)
        self.cleanup()
        return False


class MailInstance(Instance):
    """An instance receiving and delivering mail: smtpd on a loopback port,
    submission with STARTTLS and implicit TLS (self-signed certificate for
    mail.example.test), domain example.test with the given users
    (address -> password) once start() returned. `sections` adds config
    lines after the generated sections (e.g. "[qmgr]\nscan_interval = 1s").
    The lab (lab.py) also chooses the domain, myhostname, smtpd's listen
    addresses, a certificate (cert, key) and a prefix for master's command."""

    def __init__(self, users=None, global_config="", sections="", smtpd_config="", submission_config="",
                 pop3=False, pop3_config="", domain="example.test", myhostname=None, smtpd_listen=None,
                 cert=None, command_prefix=None, submission_listen=None, submission_listen_tls=None):
        self.domain = domain
        self.myhostname = myhostname or "mail." + domain
        self.users = users if users is not None else {
            f"alice@{domain}": "alice-secret", f"bob@{domain}": "bob-secret"}
        self.submission_port = free_port()
        self.submissions_port = free_port()
        # pop3d (pop3=True): 110-like port with STLS and 995-like implicit TLS.
        self.pop3 = pop3
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        tls_dir = tempfile.mkdtemp(prefix="facteur-tls-")
        self.tls_dir = tls_dir
        if cert:
            self.cert, self.key = cert
        else:
            self.cert = os.path.join(tls_dir, "cert.pem")
            self.key = os.path.join(tls_dir, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-subj", "/CN=" + self.myhostname, "-days", "2",
                            "-keyout", self.key, "-out", self.cert],
                           check=True, capture_output=True)
            os.chmod(self.key, 0o644)  # daemons run as other users when tests run as root
        os.chmod(tls_dir, 0o755)
        mail_globals = f"""myhostname = {self.myhostname}
tls_cert_file = {self.cert}
tls_key_file = {self.key}
{global_config}"""
        mail_sections = f"""[smtpd]
{smtpd_config}
[submission]
enabled = yes
listen = {" ".join(submission_listen or [f"127.0.0.1:{self.submission_port}"])}
listen_tls = {" ".join(submission_listen_tls or [f"127.0.0.1:{self.submissions_port}"])}
{submission_config}
[pop3d]
enabled = {"yes" if pop3 else "no"}
listen = 127.0.0.1:{self.pop3_port}
listen_tls = 127.0.0.1:{self.pop3s_port}
auth_failure_delay = 0s
{pop3_config}
[qmgr]
scan_interval = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{sections}"""
        super().__init__(global_config=mail_globals, sections=mail_sections, smtpd_listen=smtpd_listen,
                         command_prefix=command_prefix)
        self.spool = os.path.join(self.dir, "spool")
        self.mail_dir = os.path.join(self.dir, "data", "mail")

    def start(self, wait_services=("authd", "qmgr", "deliverd", "smtpd", "submission")):
        super().start(wait_services=wait_services)
        self.cli("domain", "add", self.domain, check_rc=0)
        for address, password in self.users.items():
            self.add_user(address, password)
        # smtpd is listening once master reports it running; wait for the port.
        wait_for(self.smtpd_ready, 10)
        if self.pop3:
            wait_for(lambda: port_open(self.pop3_port) and port_open(self.pop3s_port), 10)

    def smtpd_ready(self):
        """True once smtpd accepts connections (lab hosts check their own address)."""
        return port_open(self.smtp_port)

    def add_user(self, address, password, *options):
        self.cli("user", "add", address, "--password-stdin", *options, input=password + "\n", check_rc=0)

    def maildir(self, address):
        local, domain = address.split("@")
        return os.path.join(self.mail_dir, domain, local, "Maildir")

    def delivered(self, address):
        """Contents of the messages in the user's Maildir new/ (bytes), oldest first."""
        new = os.path.join(self.maildir(address), "new")
        try:
            names = sorted(os.listdir(new), key=maildir_order)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    def wait_delivered(self, address, count, timeout=20):
        return wait_for(lambda: len(self.delivered(address)) >= count, timeout)

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.tls_dir, ignore_errors=True)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return True
    except OSError:
        return False


class RawPOP3(RawLineClient):
    """A raw POP3 client (RFC 1939): bytes out, status lines and multi-line
    bodies in. Takes a port on 127.0.0.1 or an already connected (maybe
    TLS) socket; reads the greeting only when asked (greeting())."""

    def line(self):
        """The next line without its CRLF, as bytes."""
        return self.raw_line()

    def status(self):
        """The next status line ("+OK ..." or "-ERR ...") as text."""
        return self.line().decode(errors="replace")

    def greeting(self):
        return self.status()

    def multiline(self):
        """The body of a multi-line response (after its +OK line) up to the
        terminating ".", dot-unstuffed, as raw bytes with CRLF line ends
        (RFC 1939 §3)."""
        out = []
        while True:
            line = self.line()
            if line == b".":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line + b"\r\n")

    def cmd(self, line):
        """Sends one command, returns its status line."""
        self.send(line + "\r\n")
        return self.status()

    def cmd_multi(self, line):
        """(status line, body or None) for a command with a multi-line answer."""
        status = self.cmd(line)
        return status, (self.multiline() if status.startswith("+OK") else None)

    def login(self, user, password):
        """USER + PASS; returns the PASS status line."""
        first = self.cmd("USER " + user)
        if not first.startswith("+OK"):
            return first
        return self.cmd("PASS " + password)


def sanitizer_clean(log_text):
    """True when a log holds no AddressSanitizer or UBSan report."""
    return "AddressSanitizer" not in log_text and "runtime error:" not in log_text and \
        "LeakSanitizer" not in log_text


# --- POP3 test helpers: what was sent by SMTP against what POP3 serves.
POP3_TRACE = re.compile(
    rb"^Return-Path: <[^>\r\n]*>\r\n"
    rb"Delivered-To: [^\r\n]+\r\n"
    rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


def split_served_trace(data):
    """(trace lines, the rest) of a message as POP3 serves it (CRLF line
    ends): deliverd's Return-Path and Delivered-To, then smtpd's (folded)
    Received. None when the message does not start with them."""
    match = POP3_TRACE.match(data)
    if not match:
        return None
    return match.group(0), data[match.end():]


def smtp_send(port, sender, recipients, message, helo="client.test"):
    """Sends one message with smtplib (8BITMIME); fails the test on a refusal."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=30) as smtp:
        smtp.ehlo(helo)
        refused = smtp.sendmail(sender, recipients, message, mail_options=["BODY=8BITMIME"])
    if refused:
        fail("SMTP refused %r" % refused)


def maildir_order(name):
    """Sort key for Maildir file names: delivery second, then microsecond (M<usec>, not
    zero-padded, so a string sort misorders two deliveries in the same second), then name."""
    m = re.match(r"(\d+)\.(?:M(\d+))?", name)
    if not m:
        return (0, 0, name)
    return (int(m.group(1)), int(m.group(2) or 0), name)


def maildir_messages(maildir):
    """{file name: (sub folder, bytes)} of the messages in a Maildir's new/ and cur/."""
    out = {}
    for sub in ("new", "cur"):
        try:
            names = os.listdir(os.path.join(maildir, sub))
        except FileNotFoundError:
            continue
        for name in names:
            try:
                with open(os.path.join(maildir, sub, name), "rb") as f:
                    out[name] = (sub, f.read())
            except FileNotFoundError:
                pass  # renamed meanwhile
    return out


def served_form(stored):
    """What POP3 serves for a stored message: every LF not after a CR becomes CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", stored)

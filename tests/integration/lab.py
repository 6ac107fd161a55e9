"""The cross-host test lab (issue 5): several facteur hosts, each in its own
network namespace with its own address and the real port 25, a bridge
between them, and a real DNS server (Debian's nsd) serving the zone test.
with the scenario's MX, A and AAAA records. Where namespaces cannot be made,
the hosts get distinct loopback addresses (127.0.1.N) instead.

    with Lab() as lab:
        a = lab.facteur("a")                # alice@a.test, bob@a.test, mx.a.test
        b = lab.facteur("b")
        lab.bare("x")                        # an address and nothing on port 25
        lab.record("c.test. MX 10 mx.x.test.")
        lab.start()
        with lab.smtp("a") as smtp: smtp.sendmail(...)

Addresses come from the documentation ranges only (198.51.100.0/24,
2001:db8:fac::/64, RFC 5737 / RFC 3849): no lab packet can leave the
machine. Nothing in the root namespace is touched but what the lab creates
(the namespaces, their veths, /etc/netns/<ns>/), and all of it is removed on
exit, failure included."""

import ctypes
import email.utils
import fcntl
import os
import pwd
import shutil
import signal
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, MailInstance, fail, wait_for  # noqa: E402

CLONE_NEWNET = 0x40000000
NSD = "/usr/sbin/nsd"
NSD_CHECKCONF = "/usr/sbin/nsd-checkconf"
POSTFIX = "/usr/sbin/postfix"
V4_PREFIX = "198.51.100."
V6_PREFIX = "2001:db8:fac::"
DNS_HOST_NUMBER = 53
LOOPBACK_PREFIX = "127.0.1."

_libc = ctypes.CDLL(None, use_errno=True)


def skip(message):
    """Ends the test as skipped (exit 0) with one clear line."""
    print("SKIP: " + message)
    sys.exit(0)


def run(argv, check=True, timeout=30):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def in_netns(ns, function, *args):
    """Runs function(*args) in a new thread that first joined the network
    namespace `ns` (setns(2) on /run/netns/<ns>); returns its result or
    raises its exception. Sockets made there stay in that namespace and can
    be used from any thread afterwards. ns None runs it here."""
    if ns is None:
        return function(*args)
    outcome = {}

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns({ns}): {os.strerror(error)}")
            finally:
                os.close(fd)
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=body, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class LabCA:
    """A per-lab test CA (openssl CLI) and certificates it signs for
    mx.<host>.test, so relayd's `verify` level succeeds with tls_ca_file
    pointing at it and fails without."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
        self.cert = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "ca.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=facteur lab test CA", "-days", "2", "-keyout", self.key, "-out", self.cert,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        os.chmod(self.cert, 0o644)

    def issue(self, name):
        """(certificate, key) paths for `name`, readable by the daemons."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=" + name, "-keyout", key, "-out", csr])
        with open(ext, "w") as f:
            f.write(f"subjectAltName = DNS:{name}\nbasicConstraints = CA:FALSE\n"
                    "keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n")
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", cert])
        # Daemons run as other users when the lab runs as root.
        os.chmod(key, 0o644)
        os.chmod(cert, 0o644)
        return cert, key


class LabHost:
    """One host of the lab: a name (a → a.test, mx.a.test), its namespace
    and addresses. `facteur` is its MailInstance when it runs facteur."""

    def __init__(self, lab, name, number):
        self.lab = lab
        self.name = name
        self.number = number
        self.domain = f"{name}.test"
        self.hostname = f"mx.{name}.test"
        self.facteur = None
        self.options = None  # set for a facteur host
        self.autostart = False

    @property
    def ns(self):
        return self.lab.ns_name(self.name) if self.lab.netns else None

    @property
    def address(self):
        return (V4_PREFIX if self.lab.netns else LOOPBACK_PREFIX) + str(self.number)

    @property
    def address6(self):
        return V6_PREFIX + str(self.number) if self.lab.netns else None

    @property
    def addresses(self):
        """Its addresses, IPv6 first (the order relayd tries them in)."""
        return [self.address6, self.address] if self.address6 else [self.address]

    def relay_names(self, port=25):
        """The relay= values a log line may give for this host: mx.b.test[addr]:25."""
        return [f"{self.hostname}[{address}]:{port}" for address in self.addresses]

    def prefix(self):
        """The argv prefix that runs a command inside this host."""
        return ["ip", "netns", "exec", self.ns] if self.ns else []

    def run(self, argv, timeout=60, input=None):
        return subprocess.run(self.prefix() + list(argv), capture_output=True, text=True, timeout=timeout,
                              input=input)

    def port_open(self, port, address=None):
        def probe():
            try:
                with socket.create_connection((address or self.address, port), timeout=1):
                    return True
            except OSError:
                return False
        return in_netns(self.ns, probe)


class LabMailInstance(MailInstance):
    """A facteur host of the lab: its master runs inside the host's
    namespace, smtpd listens on the host's addresses, port 25."""

    def __init__(self, host, **options):
        self.host = host
        super().__init__(**options)

    def smtpd_ready(self):
        return self.host.port_open(25)


def serve_on_host(host, handler):
    """Threaded TCP servers with `handler` (a socketserver handler class) on
    port 25 of both of the host's addresses, as a real MX would listen,
    created inside its namespace and serving from daemon threads. Returns
    the servers (shutdown() and server_close() them when done)."""

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    class Server6(Server):
        address_family = socket.AF_INET6

    def bind():
        servers = [Server((host.address, 25), handler)]
        if host.address6:
            servers.append(Server6((host.address6, 25), handler))
        return servers

    servers = in_netns(host.ns, bind)
    for listening in servers:
        threading.Thread(target=listening.serve_forever, daemon=True).start()
    return servers


class ScriptedSMTPServer:
    """A small SMTP server bound to <host address>:25 inside the host, for
    answers facteur's smtpd would not give: `rcpt_reply(recipient, attempt)`
    returns the reply line to RCPT TO (attempt counts RCPTs for that
    recipient, from 1). Messages accepted are kept in `messages` as
    (sender, [recipients], bytes); `connections` counts sessions."""

    def __init__(self, host, rcpt_reply=None, ehlo_lines=("PIPELINING", "8BITMIME", "SIZE 10485760")):
        self.host = host
        self.rcpt_reply = rcpt_reply or (lambda recipient, attempt: "250 2.1.5 Ok")
        self.ehlo_lines = ehlo_lines
        self.messages = []
        self.transcript = []
        self.attempts = {}
        self.connections = 0
        self.lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self):
                with server.lock:
                    server.connections += 1
                try:
                    server.session(self.rfile, self.wfile)
                except (OSError, ValueError):
                    pass

        self.servers = serve_on_host(host, Handler)

    def log(self, line):
        with self.lock:
            self.transcript.append(line)

    def session(self, rfile, wfile):
        def reply(line):
            self.log("S: " + line)
            wfile.write(line.encode() + b"\r\n")
            wfile.flush()

        reply(f"220 {self.host.hostname} ESMTP scripted lab server")
        sender, recipients = None, []
        while True:
            raw = rfile.readline(4096)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.log("C: " + line)
            verb = line[:4].upper()
            if verb == "EHLO":
                lines = [self.host.hostname] + list(self.ehlo_lines)
                for item in lines[:-1]:
                    reply("250-" + item)
                reply("250 " + lines[-1])
            elif verb == "HELO":
                reply("250 " + self.host.hostname)
            elif verb == "MAIL":
                sender, recipients = line[10:].split(">")[0].lstrip("<"), []
                reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                recipient = line[8:].split(">")[0].lstrip("<")
                with self.lock:
                    self.attempts[recipient] = self.attempts.get(recipient, 0) + 1
                    attempt = self.attempts[recipient]
                answer = self.rcpt_reply(recipient, attempt)
                if answer.startswith("2"):
                    recipients.append(recipient)
                reply(answer)
            elif verb == "DATA":
                if not recipients:
                    reply("554 5.5.1 No valid recipients")
                    continue
                reply("354 End data with <CR><LF>.<CR><LF>")
                data = []
                while True:
                    raw = rfile.readline(1 << 20)
                    if not raw:
                        return
                    if raw == b".\r\n":
                        break
                    data.append(raw[1:] if raw.startswith(b".") else raw)
                with self.lock:
                    self.messages.append((sender, list(recipients), b"".join(data)))
                reply("250 2.0.0 Ok: queued as SCRIPTED")
            elif verb == "RSET":
                sender, recipients = None, []
                reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                reply("221 2.0.0 Bye")
                return
            else:
                reply("502 5.5.2 Command not recognized")

    def close(self):
        for listening in self.servers:
            listening.shutdown()
            listening.server_close()


class PostfixHost:
    """A private Postfix (Debian's postfix package, never the system
    instance) inside a lab host: its own config, queue and data directories,
    listening on the host's address, delivering p.test-style virtual
    domains to Maildirs and, as a sender, relaying by MX with DNS from the
    host's /etc/netns resolv.conf. `main` adds main.cf lines."""

    def __init__(self, host, virtual_users=("bob",), main="", mynetworks=None):
        self.host = host
        self.dir = os.path.join(host.lab.dir, "postfix-" + host.name)
        self.etc = os.path.join(self.dir, "etc")
        os.makedirs(self.etc)
        os.chmod(self.dir, 0o755)
        vmail = pwd.getpwnam("vmail")
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)
        os.chown(self.mail, vmail.pw_uid, vmail.pw_gid)
        self.log_path = os.path.join(self.dir, "maillog")
        maps = " ".join(f"{user}@{host.domain}={user}/Maildir/" for user in virtual_users)
        interfaces = host.address + (f", [{host.address6}]" if host.address6 else "")
        protocols = "all" if host.address6 else "ipv4"
        networks = mynetworks or f"127.0.0.0/8 {host.address}/32" + (f" [{host.address6}]/128" if host.address6 else "")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {self.dir}/spool
data_directory = {self.dir}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {host.hostname}
mydomain = {host.domain}
myorigin = {host.domain}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = {interfaces}
inet_protocols = {protocols}
smtp_bind_address = {host.address}
{"smtp_bind_address6 = " + host.address6 if host.address6 else ""}
mynetworks = {networks}
smtpd_client_connection_count_limit = 0
virtual_mailbox_domains = {host.domain}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = inline:{{ {maps} }}
virtual_uid_maps = static:{vmail.pw_uid}
virtual_gid_maps = static:{vmail.pw_gid}
virtual_minimum_uid = 1
smtp_tls_security_level = may
maillog_file = {self.log_path}
maillog_file_prefixes = {self.dir}
{main}
""")
        with open("/etc/postfix/master.cf") as f:
            lines = f.read().splitlines()
        out = []
        for line in lines:
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                if fields[4] == "y":  # no chroot: the private queue is not set up for one
                    fields[4] = "n"
                line = " ".join(fields)
            out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")
        self.started = False

    def postfix(self, *args):
        return self.host.run([POSTFIX, "-c", self.etc, *args])

    def start(self):
        for sub in ("spool", "data"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), postfix.pw_uid, postfix.pw_gid)
        self.postfix("check")
        result = self.postfix("start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix on {self.host.name} did not start: {result.stderr}{result.stdout}\n"
                               + self.log())
        self.started = True
        if not wait_for(lambda: self.host.port_open(25), 20):
            raise RuntimeError(f"postfix on {self.host.name} is not listening on {self.host.address}:25\n"
                               + self.log())

    def maildir(self, user):
        return os.path.join(self.mail, user, "Maildir")

    def delivered(self, user):
        out = []
        for sub in ("new", "cur"):
            directory = os.path.join(self.maildir(user), sub)
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            for name in names:
                with open(os.path.join(directory, name), "rb") as f:
                    out.append(f.read())
        return out

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if not self.started:
            return
        self.postfix("stop")
        wait_for(lambda: self.postfix("status").returncode != 0, 20)
        self.started = False
        # A master that did not stop in time is killed by its pid file.
        try:
            with open(os.path.join(self.dir, "spool", "pid", "master.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


class Lab:
    """Hosts, their network and the DNS server; a context manager that
    always cleans up. Declare hosts (facteur, bare) and records, then
    start(). Set FACTEUR_LAB_MODE=loopback to force the fallback."""

    def __init__(self, tag=None):
        if os.geteuid() != 0:
            skip("the lab needs root (network namespaces or port 25 on loopback addresses)")
        self.tag = tag or f"fct{os.getpid() % 100000}"
        self.dir = tempfile.mkdtemp(prefix="facteur-lab-")
        os.chmod(self.dir, 0o755)
        self.hosts = {}
        self.records = []
        self.created_ns = []
        self.netns_dirs = []
        self.created_etc_netns = False
        self.nsd = None
        self.postfixes = []
        self.servers = []
        self.ca = None
        self.started = False
        self.netns = False
        self.dns_port = 53
        self.choose_mode()

    # --- mode -------------------------------------------------------------
    def ns_name(self, name):
        return f"{self.tag}-{name}"

    def choose_mode(self):
        forced = os.environ.get("FACTEUR_LAB_MODE", "")
        reason = "FACTEUR_LAB_MODE=loopback" if forced == "loopback" else None
        if reason is None:
            probe = self.ns_name("net")
            if os.path.exists(f"/run/netns/{probe}"):
                # Left by a killed run that had the same pid: ours now.
                subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
            try:
                run(["ip", "netns", "add", probe])
                self.created_ns.append(probe)
                self.netns = True
                return
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                reason = str(error).strip()
        print(f"netns unavailable ({reason}): using loopback addresses {LOOPBACK_PREFIX}N")
        self.netns = False
        # Every loopback lab uses the same addresses: one at a time (ctest
        # runs test files in parallel). The lock goes with the process.
        self.loopback_lock = open(os.path.join(tempfile.gettempdir(), "facteur-lab-loopback.lock"), "w")
        fcntl.flock(self.loopback_lock, fcntl.LOCK_EX)
        if not self.loopback_port_free(25):
            shutil.rmtree(self.dir, ignore_errors=True)
            skip("neither network namespaces nor port 25 on loopback addresses can be had")

    @staticmethod
    def loopback_port_free(port, kind=socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK_PREFIX + "250", port))
                return True
            except OSError:
                return False

    @property
    def ca_file(self):
        """The lab CA's certificate (PEM), for [relayd] tls_ca_file; it exists once start() ran."""
        return os.path.join(self.dir, "ca", "ca.pem")

    @property
    def dns_address(self):
        return (V4_PREFIX if self.netns else LOOPBACK_PREFIX) + str(DNS_HOST_NUMBER)

    @property
    def dns_address6(self):
        return V6_PREFIX + str(DNS_HOST_NUMBER) if self.netns else None

    @property
    def dns_resolver(self):
        """The value for facteur's dns_resolvers."""
        return self.dns_address if self.dns_port == 53 else f"{self.dns_address}:{self.dns_port}"

    # --- declarations -----------------------------------------------------
    def _host(self, name, mx=True):
        if name in self.hosts:
            raise ValueError(f"host {name} declared twice")
        host = LabHost(self, name, 11 + len(self.hosts))
        self.hosts[name] = host
        if mx:
            self.record(f"{host.domain}. MX 10 {host.hostname}.")
        return host

    def bare(self, name, mx=True):
        """A host with an address (mx.<name>.test A/AAAA) and nothing running;
        with mx, <name>.test has MX 10 mx.<name>.test."""
        return self._host(name, mx)

    def facteur(self, name, mx=True, users=None, global_config="", sections="", relayd="", qmgr="",
                smtpd="", submission="", autostart=True):
        """A facteur host: domain <name>.test (alice and bob unless `users`),
        myhostname mx.<name>.test, smtpd on <address>:25, a certificate signed
        by the lab CA, dns_resolvers = the lab DNS, short retry times. The
        strings add lines to the global part and to [relayd], [qmgr],
        [smtpd] and [submission]."""
        host = self._host(name, mx)
        host.autostart = autostart
        host.options = dict(users=users, global_config=global_config, sections=sections, relayd=relayd,
                            qmgr=qmgr, smtpd=smtpd, submission=submission)
        return host

    def record(self, line):
        """A resource record in the lab zone, master-file syntax with
        absolute names: "b.test. MX 10 mx.x.test.", "nomx.test. A 198.51.100.12"."""
        self.records.append(line)

    # --- start --------------------------------------------------------------
    def start(self):
        self.ca = LabCA(os.path.join(self.dir, "ca"))
        if self.netns:
            self.build_network()
        self.start_dns()
        for host in self.hosts.values():
            if host.options is not None:
                self.make_facteur(host)
        for host in self.hosts.values():
            if host.facteur is not None and host.autostart:
                self.start_host(host.name)
        self.started = True
        return self

    def build_network(self):
        """A bridge in the lab's own namespace (which also holds the DNS
        server's address) and one veth per host, created with `ip -n` inside
        the namespaces: the root namespace never sees them."""
        net = self.ns_name("net")
        run(["ip", "-n", net, "link", "set", "lo", "up"])
        run(["ip", "-n", net, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", net, "addr", "add", f"{self.dns_address}/24", "dev", "br0"])
        run(["ip", "-n", net, "addr", "add", f"{self.dns_address6}/64", "dev", "br0", "nodad"])
        run(["ip", "-n", net, "link", "set", "br0", "up"])
        for host in self.hosts.values():
            ns = host.ns
            if os.path.exists(f"/run/netns/{ns}"):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
            run(["ip", "netns", "add", ns])
            self.created_ns.append(ns)
            port = f"v-{host.name}"[:15]
            run(["ip", "-n", net, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "-n", net, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "addr", "add", f"{host.address6}/64", "dev", "eth0", "nodad"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            # ip netns exec bind-mounts /etc/netns/<ns>/resolv.conf over
            # /etc/resolv.conf: how programs of the host (Postfix) find the
            # lab DNS.
            etc = os.path.join("/etc/netns", ns)
            if not os.path.isdir("/etc/netns"):
                os.makedirs("/etc/netns")
                self.created_etc_netns = True
            os.makedirs(etc, exist_ok=True)
            self.netns_dirs.append(etc)
            with open(os.path.join(etc, "resolv.conf"), "w") as f:
                f.write(f"nameserver {self.dns_address}\noptions timeout:1 attempts:2\n")
            with open(os.path.join(etc, "hosts"), "w") as f:
                f.write(f"127.0.0.1 localhost\n::1 localhost\n{host.address} {host.hostname}\n")

    def zone_text(self):
        lines = ["$TTL 60", "test. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
                 "test. IN NS ns.test.", f"ns.test. IN A {self.dns_address}"]
        for host in self.hosts.values():
            lines.append(f"{host.hostname}. IN A {host.address}")
            if host.address6:
                lines.append(f"{host.hostname}. IN AAAA {host.address6}")
        for record in self.records:
            name, rest = record.split(None, 1)
            lines.append(f"{name} IN {rest}")
        return "\n".join(lines) + "\n"

    def start_dns(self):
        """A private nsd: its own config, zonesdir, pid file and log, no
        remote control, serving the zone test. on the lab DNS address."""
        directory = os.path.join(self.dir, "nsd")
        os.makedirs(directory)
        if not self.netns:
            self.dns_port = 53 if self.loopback_port_free(53, socket.SOCK_DGRAM) else 5353
        with open(os.path.join(directory, "test.zone"), "w") as f:
            f.write(self.zone_text())
        addresses = f"  ip-address: {self.dns_address}\n"
        if self.dns_address6:
            addresses += f"  ip-address: {self.dns_address6}\n"
        self.nsd_conf = os.path.join(directory, "nsd.conf")
        self.nsd_log = os.path.join(directory, "nsd.log")
        with open(self.nsd_conf, "w") as f:
            f.write(f"""server:
{addresses}  port: {self.dns_port}
  do-ip4: yes
  do-ip6: {"yes" if self.dns_address6 else "no"}
  username: ""
  chroot: ""
  zonesdir: "{directory}"
  pidfile: "{directory}/nsd.pid"
  database: ""
  zonelistfile: "{directory}/zone.list"
  xfrdfile: "{directory}/xfrd.state"
  xfrdir: "{directory}"
  logfile: "{self.nsd_log}"
  server-count: 1
  verbosity: 1
  hide-version: yes
  reuseport: no
remote-control:
  control-enable: no
zone:
  name: "test"
  zonefile: "test.zone"
""")
        checked = run([NSD_CHECKCONF, self.nsd_conf], check=False)
        if checked.returncode != 0:
            raise RuntimeError(f"nsd-checkconf {self.nsd_conf}: {checked.stdout}{checked.stderr}")
        prefix = ["ip", "netns", "exec", self.ns_name("net")] if self.netns else []
        self.nsd = subprocess.Popen(prefix + [NSD, "-d", "-c", self.nsd_conf], stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(directory, "nsd.stderr"), "wb"))
        ns = self.ns_name("net") if self.netns else None
        if not wait_for(lambda: self.dns_query(ns, "test", 6) is not None, 10):
            raise RuntimeError("nsd did not answer; its log:\n" + self.read(self.nsd_log) +
                               self.read(os.path.join(directory, "nsd.stderr")))

    def dns_query(self, ns, name, qtype):
        """The answer count of a query to the lab DNS (None if no answer):
        a readiness probe only, not a resolver."""
        question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
        packet = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question + bytes([0, qtype, 0, 1])

        def ask():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(0.5)
                try:
                    sock.sendto(packet, (self.dns_address, self.dns_port))
                    reply = sock.recv(4096)
                except OSError:
                    return None
                return int.from_bytes(reply[6:8], "big") if reply[:2] == b"\x12\x34" else None
        return in_netns(ns, ask)

    def make_facteur(self, host):
        options = host.options
        cert = self.ca.issue(host.hostname)
        def on(port):
            addresses = [f"{host.address}:{port}"]
            if self.netns:
                # The namespace's own loopback too: the test client inside
                # the host is then a trusted (mynetworks) local client.
                addresses += [f"127.0.0.1:{port}", f"[{host.address6}]:{port}"]
            return addresses
        listen = on(25)
        relayd = f"[relayd]\nbind_address = {host.address}\n"
        if host.address6:
            relayd += f"bind_address6 = {host.address6}\n"
        else:
            relayd += "ipv6 = no\n"
        if not os.access(os.path.join(BIN, "relayd"), os.X_OK):
            # The lab itself (test_relay_lab) needs no relayd; scenarios do
            # and fail on their first relay with the log saying why.
            print(f"note: no relayd in {BIN}: host {host.name} runs without it")
            relayd += "enabled = no\n"
        sections = (f"{relayd}{options['relayd']}\n[qmgr]\n{options['qmgr']}\n{options['sections']}")
        host.facteur = LabMailInstance(
            host, users=options["users"], domain=host.domain, myhostname=host.hostname, smtpd_listen=listen,
            cert=cert, command_prefix=host.prefix(), smtpd_config=options["smtpd"],
            submission_listen=on(587), submission_listen_tls=on(465),
            submission_config=options["submission"],
            global_config=f"dns_resolvers = {self.dns_resolver}\n{options['global_config']}",
            sections=sections)

    def start_host(self, name):
        host = self.hosts[name]
        host.facteur.start()
        if not host.port_open(25):
            raise RuntimeError(f"facteur on {name} is not listening on {host.address}:25; log:\n"
                               + host.facteur.log()[-4000:])

    def stop_host(self, name):
        self.hosts[name].facteur.stop()

    # --- clients ------------------------------------------------------------
    def connect(self, host, port=25, address=None, timeout=30):
        """A TCP socket from inside `host` to address (default the host's own) and port."""
        host = self.hosts[host]
        # Without namespaces, the host's own loopback address is the source,
        # as it is for relayd (bind_address).
        source = None if self.netns else (host.address, 0)
        return in_netns(host.ns, lambda: socket.create_connection((address or host.address, port), timeout,
                                                                  source_address=source))

    def smtp(self, host, port=25, address=None, helo="client.lab.test", timeout=30):
        """An smtplib.SMTP connected from inside `host`, by default to its own
        smtpd on the namespace's loopback (a trusted client, mynetworks)."""
        host = self.hosts[host]
        if address is None:
            address = "127.0.0.1" if self.netns else host.address
        source = None if self.netns else (host.address, 0)
        return in_netns(host.ns, lambda: smtplib.SMTP(address, port, local_hostname=helo, timeout=timeout,
                                                      source_address=source))

    def scripted_server(self, host, **options):
        server = ScriptedSMTPServer(self.hosts[host], **options)
        self.servers.append(server)
        return server

    def postfix(self, host, **options):
        """A private Postfix on a bare host (declared with bare())."""
        postfix = PostfixHost(self.hosts[host], **options)
        self.postfixes.append(postfix)
        return postfix

    # --- logs -----------------------------------------------------------------
    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self, host, *needles):
        """Lines of a facteur host's log containing every needle."""
        return [line for line in self.hosts[host].facteur.log().splitlines()
                if all(needle in line for needle in needles)]

    def excerpt(self, host, *needles, limit=15):
        """The last matching log lines, for failure messages."""
        lines = self.log_lines(host, *needles)[-limit:]
        return f"\n--- {host}'s log lines with {needles!r} ---\n" + ("\n".join(lines) or "(none)")

    def dump(self):
        """Every log, printed when a scenario fails."""
        for host in self.hosts.values():
            if host.facteur is not None:
                print(f"\n===== facteur {host.name} log (last 12000 chars) =====\n" + host.facteur.log()[-12000:],
                      file=sys.stderr)
        for postfix in self.postfixes:
            print(f"\n===== postfix {postfix.host.name} maillog =====\n" + postfix.log()[-6000:], file=sys.stderr)
        for server in self.servers:
            print(f"\n===== scripted server {server.host.name} transcript =====\n" +
                  "\n".join(server.transcript[-80:]), file=sys.stderr)
        if self.nsd is not None:
            print("\n===== nsd log =====\n" + self.read(self.nsd_log)[-3000:], file=sys.stderr)

    # --- cleanup -----------------------------------------------------------------
    def cleanup(self):
        for server in self.servers:
            try:
                server.close()
            except OSError:
                pass
        for postfix in self.postfixes:
            try:
                postfix.stop()
            except (OSError, subprocess.SubprocessError):
                pass
        for host in self.hosts.values():
            if host.facteur is not None:
                host.facteur.cleanup()
        if self.nsd is not None and self.nsd.poll() is None:
            self.nsd.terminate()
            try:
                self.nsd.wait(10)
            except subprocess.TimeoutExpired:
                self.nsd.kill()
                self.nsd.wait()
        # Deleting a namespace deletes its veth end and so the pair.
        for ns in reversed(self.created_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        for directory in self.netns_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        if self.created_etc_netns:
            try:
                os.rmdir("/etc/netns")  # only when no one else put anything there meanwhile
            except OSError:
                pass
        if os.environ.get("FACTEUR_KEEP_TEST_DIR"):
            print("kept " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        # ctest's timeout sends SIGTERM: still clean up (namespaces, nsd, masters).
        def terminated(signum, frame):
            raise SystemExit(f"FAIL: terminated by signal {signum}")
        self.previous_sigterm = signal.signal(signal.SIGTERM, terminated)
        return self

    def __exit__(self, kind, value, traceback):
        failed = kind is not None and not (isinstance(value, SystemExit) and value.code in (0, None))
        try:
            if failed:
                self.dump()
        finally:
            self.cleanup()
            signal.signal(signal.SIGTERM, self.previous_sigterm)
        return False


# --- scenario helpers -------------------------------------------------------
EXCERPT_MARK = "\n--- "


def check(condition, message):
    """harness.check, but log excerpts (Lab.excerpt, starting "\n--- ")
    appended to the message are printed only when the check fails."""
    if not condition:
        fail(message)
    print("ok - " + message.split(EXCERPT_MARK)[0])


def text_message(sender, recipient, subject, body="Hello across the lab.\r\n", extra_headers=""):
    """A small RFC 5322 message (CRLF line ends) with a Date (a submission
    server would add one: RFC 6409 §8.3) and a unique Message-ID."""
    tag = subject.replace(" ", "-")
    return (f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
            f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{tag}.{os.getpid()}@lab.test>\r\n{extra_headers}\r\n{body}").encode()


def submit(lab, host, sender, recipients, message, mail_options=()):
    """Sends one message to `host`'s own smtpd from a trusted client inside
    the host; fails the test when anything is refused."""
    with lab.smtp(host) as smtp:
        smtp.ehlo("client.lab.test")
        refused = smtp.sendmail(sender, recipients, message, mail_options=list(mail_options))
    if refused:
        raise AssertionError(f"{host} refused recipients: {refused!r}")


TRACE_FIELDS = (b"return-path:", b"delivered-to:", b"x-original-to:", b"received:")


def strip_trace(data):
    """The message after the trace fields the MTAs put on top (Return-Path,
    Delivered-To, Received, folded lines included), with LF line ends."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    position = 0
    while position < len(lines):
        line = lines[position]
        if line[:1] in (b" ", b"\t") and position > 0:
            position += 1
        elif line.lower().startswith(TRACE_FIELDS):
            position += 1
        else:
            break
    return b"\n".join(lines[position:])


def same_message(delivered, sent):
    """True when `delivered` is `sent` byte for byte after the trace fields."""
    return strip_trace(delivered) == sent.replace(b"\r\n", b"\n")


def reports(messages, action=None):
    """The multipart/report messages among `messages` (bytes), parsed with
    Python's email package: [(message, [per-recipient field dicts])],
    optionally only those with a recipient of the given Action."""
    import email
    import email.policy
    out = []
    for data in messages:
        parsed = email.message_from_bytes(data, policy=email.policy.compat32)
        if parsed.get_content_type() != "multipart/report":
            continue
        recipients = []
        for part in parsed.walk():
            if part.get_content_type() == "message/delivery-status":
                # compat32 parses the status groups as a list of Message objects.
                groups = part.get_payload()
                for group in groups[1:] if isinstance(groups, list) else []:
                    recipients.append({k.lower(): v for k, v in group.items()})
        if action is None or any(r.get("action", "").lower() == action for r in recipients):
            out.append((parsed, recipients))
    return out


def queue_list(host):
    """`facteur queue list` on a facteur host: its stdout and stderr."""
    result = host.facteur.cli("queue", "list")
    return result.stdout + result.stderr


def relay_lines(lab, host, recipient):
    """Log lines of `host` about delivery attempts to `recipient`."""
    return lab.log_lines(host, f"to=<{recipient}>")

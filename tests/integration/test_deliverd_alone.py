"""deliverd by itself, without master or qmgr: its socket bound here and
handed over at descriptor 3 (FACTEUR_LISTEN_NAMES=deliver, as master does),
a queue file written in Python from the format in libmail/queue.hpp, and
delivery requests sent as ipc frames built here from DESIGN §4 — nothing of
facteur's own client code. Checks the Maildir and mbox files byte for byte
(Return-Path/Delivered-To added, RFC 5322 §3.6.7; CRLF -> LF; mboxrd
quoting, RFC 4155), the error replies, and a clean exit on SIGTERM."""

import fcntl
import os
import random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, encode_frame, fail, parse_frame, wait_for  # noqa: E402


def call(path, attributes, timeout=30):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode_frame(attributes))
        header = b""
        while len(header) < 4:
            chunk = sock.recv(4 - len(header))
            if not chunk:
                raise ConnectionError("closed")
            header += chunk
        (length,) = struct.unpack(">I", header)
        body = b""
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            if not chunk:
                raise ConnectionError("closed")
            body += chunk
        return parse_frame(header + body)


def get(attributes, name):
    for key, value in attributes:
        if key == name:
            return value
    return None


def record(kind, data):
    return kind + struct.pack(">I", len(data)) + data


def write_queue_file(path, queue_id, sender, message):
    # libmail/queue.hpp: V "1", M chunks, E envelope frame, Z total size.
    rcpt = encode_frame([("address", "bob@example.test"), ("notify", "0")])
    envelope = encode_frame([("queue_id", queue_id), ("sender", sender), ("rcpt", rcpt), ("body", "8bitmime"),
                            ("arrival", str(int(time.time()))), ("client_address", "127.0.0.1"),
                            ("client_helo", "client.test"), ("protocol", "ESMTP"), ("auth_user", ""),
                            ("submitter_uid", "-1"), ("size", str(len(message)))])
    data = record(b"V", b"1")
    for start in range(0, len(message), 1 << 20):
        data += record(b"M", message[start:start + (1 << 20)])
    data += record(b"E", envelope) + record(b"Z", struct.pack(">Q", len(message)))
    with open(path, "wb") as f:
        f.write(data)


def new_queue_id():
    return "".join(random.choice("0123456789ABCDEFGHIJKLMNOPQRSTUV") for _ in range(18))


def main():
    bin_dir = os.environ.get("FACTEUR_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin")
    binary = os.path.join(os.path.abspath(bin_dir), "deliverd")
    if not os.access(binary, os.X_OK):
        fail(f"no deliverd binary at {binary} (set FACTEUR_BIN)")
    top = tempfile.mkdtemp(prefix="facteur-deliverd-")
    process = None
    try:
        for sub in ("run", "data/mail", "spool/active", "etc"):
            os.makedirs(os.path.join(top, sub))
        config = os.path.join(top, "etc", "facteur.conf")
        with open(config, "w") as f:
            f.write(f"""data_dir = {top}/data
spool_dir = {top}/spool
runtime_dir = {top}/run
myhostname = mx.example.test
log_target = stderr
[deliverd]
workers = 2
""")
        socket_path = os.path.join(top, "run", "deliverd")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(socket_path)
        listener.listen(16)
        high = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)
        log_path = os.path.join(top, "deliverd.log")
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        env = dict(os.environ, FACTEUR_LISTEN_FDS="1", FACTEUR_LISTEN_NAMES="deliver")
        env.pop("FACTEUR_CONFIG", None)
        process = os.posix_spawn(binary, [binary, "-c", config], env,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, log, 2), (os.POSIX_SPAWN_DUP2, high, 3)])
        os.close(high)
        os.close(log)
        listener.close()

        def log_text():
            with open(log_path, errors="replace") as f:
                return f.read()

        check(wait_for(lambda: "ready" in log_text(), 30), "deliverd starts and says ready")

        queue_id = new_queue_id()
        queue_file = os.path.join(top, "spool", "active", queue_id)
        message = (b"Return-Path: <forged@evil.test>\r\nSubject: caf\xc3\xa9\r\nStatus: RO\r\n\r\n"
                   b"Hello\r\nFrom the body\r\n>From quoted\r\n.\r\n")
        write_queue_file(queue_file, queue_id, "alice@example.test", message)
        mail = os.path.join(top, "data", "mail", "example.test")

        def mailbox(user, fmt, quota="0"):
            return encode_frame([("recipient", f"{user}@example.test"), ("kind", "mailbox"),
                                ("user", f"{user}@example.test"), ("mail_path", f"{mail}/{user}"),
                                ("format", fmt), ("quota", quota), ("folder", "")])

        reply = call(socket_path, [("op", "deliver"), ("queue_id", queue_id), ("queue_file", queue_file),
                                   ("sender", "alice@example.test"), ("delivery", mailbox("bob", "maildir")),
                                   ("delivery", mailbox("carol", "mbox")),
                                   ("delivery", mailbox("dave", "maildir", "5"))])
        check(get(reply, "status") == b"ok", "a delivery request gets status=ok")
        results = [dict(parse_frame(v)) for k, v in reply if k == "result"]
        check([(r["outcome"], r["dsn"]) for r in results] ==
              [(b"sent", b"2.0.0"), (b"sent", b"2.0.0"), (b"deferred", b"4.2.2")],
              "one result per target, in order: maildir, mbox sent; over quota deferred 4.2.2")

        new = os.path.join(mail, "bob", "Maildir", "new")
        names = os.listdir(new)
        check(len(names) == 1 and ".mx.example.test,S=" in names[0], "one Maildir file named time.M..P..Q...host,S=")
        with open(os.path.join(new, names[0]), "rb") as f:
            stored = f.read()
        check(stored == b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n"
                        b"Subject: caf\xc3\xa9\nStatus: RO\n\nHello\nFrom the body\n>From quoted\n.\n",
              "Maildir file: trace fields added, forged Return-Path gone, CRLF -> LF, byte for byte")
        check(f",S={len(stored)}," in names[0], "S= is the stored size")
        with open(os.path.join(mail, "carol", "mbox"), "rb") as f:
            mbox = f.read()
        first, rest = mbox.split(b"\n", 1)
        check(first.startswith(b"From alice@example.test "), "mbox From_ line names the sender")
        check(rest == b"Return-Path: <alice@example.test>\nDelivered-To: carol@example.test\n"
                      b"Subject: caf\xc3\xa9\n\nHello\n>From the body\n>>From quoted\n.\n\n",
              "mbox: Status removed, mboxrd quoting, empty line at the end")
        check(f"{queue_id}: to=<bob@example.test>, relay=local" in log_text()
              and "status=sent (delivered to maildir)" in log_text(), "Postfix-style log line per target")

        missing = call(socket_path, [("op", "deliver"), ("queue_id", queue_id),
                                     ("queue_file", queue_file + "-gone"), ("sender", ""),
                                     ("delivery", mailbox("bob", "maildir"))])
        check(get(missing, "status") == b"error", "a missing queue file gets an error reply")
        bad = call(socket_path, [("op", "deliver"), ("queue_id", queue_id), ("queue_file", "relative"),
                                 ("sender", ""), ("delivery", mailbox("bob", "maildir"))])
        check(get(bad, "status") == b"error", "a relative queue file path is refused")
        check(len(os.listdir(new)) == 1, "nothing more was delivered")

        os.kill(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            pid, status = os.waitpid(process, os.WNOHANG)
            if pid == process:
                break
            time.sleep(0.05)
        else:
            fail("deliverd did not exit after SIGTERM")
        process = None
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "SIGTERM: exit status 0")
    finally:
        if process is not None:
            os.kill(process, signal.SIGKILL)
            os.waitpid(process, 0)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()

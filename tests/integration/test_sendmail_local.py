"""sendmail(1), mailq(1) and newaliases(1) with nothing running: messages
dropped into a spool's maildrop/ are read back with a queue-file reader
written here in Python from the format comment in libmail/queue.hpp (never
with facteur's own code); the program's name picks its mode (symlinks);
sysexits(3) codes for every refusal; an unprivileged user can submit."""

import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import tempfile

from harness import BIN, check, fail, parse_frame

SENDMAIL = os.path.join(BIN, "sendmail")
EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE = 64, 65, 66, 69
EX_CANTCREAT, EX_TEMPFAIL, EX_CONFIG = 73, 75, 78
QUEUE_ID = re.compile(r"^[0-9A-V]{18}$")


# --- queue files (libmail/queue.hpp): records of 1 byte type, u32 BE length,
# data: 'V' "1" first, 'M' message chunks, one 'E' envelope (an ipc frame
# whose "rcpt" attributes are nested frames), 'Z' the u64 BE message size
# last, nothing after it.
def read_queue_file(path):
    with open(path, "rb") as f:
        data = f.read()
    records, position = [], 0
    while position < len(data):
        if len(data) - position < 5:
            raise ValueError("truncated record header")
        kind = chr(data[position])
        (length,) = struct.unpack(">I", data[position + 1:position + 5])
        body = data[position + 5:position + 5 + length]
        if len(body) != length:
            raise ValueError("truncated record")
        records.append((kind, body))
        position += 5 + length
    if not records or records[0] != ("V", b"1"):
        raise ValueError("no version record first")
    if records[-1][0] != "Z" or len(records[-1][1]) != 8:
        raise ValueError("no end record last")
    kinds = [kind for kind, _ in records[1:-1]]
    if kinds.count("E") != 1 or set(kinds) - {"E", "M"}:
        raise ValueError("bad record sequence " + "".join(kinds))
    message = b"".join(body for kind, body in records if kind == "M")
    (size,) = struct.unpack(">Q", records[-1][1])
    if size != len(message):
        raise ValueError("end record size does not match the message")
    envelope = {}
    recipients = []
    for name, value in parse_frame(next(body for kind, body in records if kind == "E")):
        if name == "rcpt":
            recipients.append({n: v.decode() for n, v in parse_frame(value)})
        else:
            envelope[name] = value.decode()
    envelope["recipients"] = recipients
    return envelope, message


class Spool:
    """A config and a spool with its folders, as master would create them."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="facteur-sendmail-")
        os.chmod(self.dir, 0o755)  # an unprivileged submitter must reach maildrop/
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "facteur.conf")
        for folder in ("tmp", "incoming", "active", "deferred", "hold", "corrupt", "log"):
            os.makedirs(os.path.join(self.spool, folder), mode=0o750)
        self.maildrop = os.path.join(self.spool, "maildrop")
        os.makedirs(self.maildrop)
        os.chmod(self.maildrop, 0o1733)
        os.chmod(self.spool, 0o755)
        self.write_config()

    def write_config(self, extra=""):
        with open(self.conf, "w") as f:
            f.write(f"""config_directory = {self.dir}
spool_dir = {self.spool}
runtime_dir = {self.dir}/run
myhostname = host.example
message_size_limit = 8K
log_target = stderr
{extra}
""")
        os.chmod(self.conf, 0o644)

    def sendmail(self, *args, input=b"", program=SENDMAIL, config=True, env=None, user=None):
        argv = [program] + (["-C", self.conf] if config else []) + list(args)
        preexec = None
        if user is not None:
            def preexec():
                os.setgid(user.pw_gid)
                os.setgroups([])
                os.setuid(user.pw_uid)
        return subprocess.run(argv, input=input, capture_output=True, timeout=60, env=env, preexec_fn=preexec)

    def dropped(self):
        """Queue ids in maildrop/ (as root or the owner of the folder)."""
        return sorted(name for name in os.listdir(self.maildrop) if QUEUE_ID.match(name))

    def only_file(self):
        names = self.dropped()
        if len(names) != 1:
            fail(f"expected one file in maildrop/, found {names} {os.listdir(self.maildrop)}")
        path = os.path.join(self.maildrop, names[0])
        envelope, message = read_queue_file(path)
        os.unlink(path)
        return names[0], envelope, message, path

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def login_name():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def header_of(message):
    return message.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_dash_t(spool):
    message = (b"To: Bob <bob@example.org>, team: carol@example.org, dave@example.net;\n"
               b"Cc: erin\n"
               b"Bcc: secret@example.com\n"
               b"Subject: hello\n"
               b"\n"
               b"first line\n"
               b"bare cr\rline\n"
               b"..double dot\n"
               b".\n"
               b"after the dot\n")
    result = spool.sendmail("-t", "extra@example.net", input=message)
    check(result.returncode == 0, "sendmail -t exits 0: " + result.stderr.decode(errors="replace"))
    check(result.stderr == b"", "sendmail is silent without -v")
    queue_id, envelope, data, _ = spool.only_file()
    addresses = [r["address"] for r in envelope["recipients"]]
    check(addresses == ["extra@example.net", "bob@example.org", "carol@example.org", "dave@example.net",
                        "erin@host.example", "secret@example.com"],
          "recipients: operands, then To, the group, Cc (qualified with myhostname) and Bcc")
    check(envelope["sender"] == f"{login_name()}@host.example", "the sender is login@myhostname")
    check(envelope["queue_id"] == queue_id, "the file is named after its queue id")
    check(envelope["protocol"] == "local" and envelope["client_address"] == "local", "protocol and client are local")
    check(envelope["auth_user"] == login_name(), "auth_user is the login name")
    check(envelope["submitter_uid"] == str(os.getuid()), "submitter_uid is the real uid")
    check(int(envelope["size"]) == len(data), "the envelope size is the message size")
    check(b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b""),
          "every line ends in CRLF (RFC 5322 §2.1): no bare LF or CR left")
    header = header_of(data)
    check(header.startswith(f"Received: (from {login_name()}@localhost)\r\n\tby host.example (facteur) id {queue_id};"
                            .encode()), "a Received trace field is on top (RFC 5321 §4.4)")
    check(b"Bcc" not in data and b"secret@example.com" not in data, "Bcc is removed from the message")
    check(f"\r\nMessage-ID: <{queue_id}@host.example>\r\n".encode() in header, "Message-ID added")
    check(re.search(rb"\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n", header) is not None,
          "Date added (RFC 5322 §3.3)")
    check(f"\r\nFrom: {login_name()}@host.example\r\n".encode() in header or
          f"<{login_name()}@host.example>\r\n".encode() in header, "From added")
    check(data.endswith(b"\r\n\r\nfirst line\r\nbare cr\r\nline\r\n..double dot\r\n"),
          "a lone '.' line ends the input; dots elsewhere are kept as they are")


def test_operands_dash_i_and_options(spool):
    message = b"Subject: dots\r\n\r\none\r\n.\r\ntwo\r\n"
    result = spool.sendmail("-oi", "-f", "<>", "-F", "Build Robot", "-N", "success,failure", "-R", "hdrs",
                            "-V", "envid-7", "-B", "8BITMIME", "bob", "carol@example.org", input=message)
    check(result.returncode == 0, "sendmail -oi with DSN options exits 0: " + result.stderr.decode(errors="replace"))
    _, envelope, data, _ = spool.only_file()
    check(envelope["sender"] == "", "-f <> is the null sender")
    check([r["address"] for r in envelope["recipients"]] == ["bob@host.example", "carol@example.org"],
          "a bare operand gets @myhostname")
    check(all(r["notify"] == str(2 | 4) for r in envelope["recipients"]), "-N is stored as NOTIFY per recipient")
    check(envelope.get("envid") == "envid-7", "-V is stored as ENVID")
    check(envelope.get("ret") in ("hdrs", "headers", "HDRS"), "-R hdrs is stored as RET: " + envelope.get("ret", "-"))
    check(envelope.get("body", "").lower() in ("8bitmime", "8bit"), "-B 8BITMIME is stored: " + envelope.get("body", "-"))
    check(f"\r\nFrom: Build Robot <{login_name()}@host.example>\r\n".encode() in data,
          "-F names the author of a From: sendmail adds")
    check(data.endswith(b"\r\n\r\none\r\n.\r\ntwo\r\n"), "-oi: a lone dot is message text")


def test_config_from_environment(spool):
    env = dict(os.environ, FACTEUR_CONFIG=spool.conf)
    result = spool.sendmail("bob@example.org", input=b"Subject: env\n\nx\n", config=False, env=env)
    check(result.returncode == 0, "FACTEUR_CONFIG is honoured without -C: " + result.stderr.decode(errors="replace"))
    spool.only_file()


def test_refusals(spool):
    def expect(args, code, fragment, input=b"Subject: x\n\nbody\n", what=""):
        result = spool.sendmail(*args, input=input)
        stderr = result.stderr.decode(errors="replace")
        check(result.returncode == code and fragment in stderr,
              f"{what or ' '.join(args)}: exit {code} with '{fragment}' (got {result.returncode}: {stderr.strip()})")
        check(spool.dropped() == [] and os.listdir(spool.maildrop) == [], f"{what or ' '.join(args)}: nothing left in maildrop/")

    expect(["-k", "bob"], EX_USAGE, "sendmail: unknown option -k", what="unknown option")
    expect(["-bs"], EX_USAGE, "-bs is not supported", what="-bs")
    expect(["-qRexample.org"], EX_USAGE, "-qR is not supported", what="-qR")
    expect([], EX_USAGE, "sendmail: no recipients", what="no recipients")
    expect(["-t"], EX_USAGE, "no recipients", what="-t without recipient fields")
    expect(["bob@"], EX_USAGE, "recipient", what="bad operand")
    expect(["-t"], EX_DATAERR, "To: header", input=b"To: Bob <bob@example.org\n\nx\n", what="bad To: with -t")
    expect(["bob"], EX_CANTCREAT, "message too large", input=b"Subject: big\n\n" + b"x" * 9000 + b"\n",
           what="over message_size_limit")
    # A header the size limit allows, but with no end: refused, not buffered forever.
    spool.write_config("message_size_limit = 4M")
    expect(["bob"], EX_DATAERR, "header is larger", input=b"X-Long: " + b"y" * (2 << 20), what="unbounded header")
    spool.write_config("spool_dir = " + os.path.join(spool.dir, "no-such-spool"))
    expect(["bob"], EX_TEMPFAIL, "cannot queue the message", what="missing spool")
    spool.write_config()
    result = spool.sendmail("-C", os.path.join(spool.dir, "missing.conf"), "bob", input=b"x\n")
    check(result.returncode == EX_CONFIG and b"missing.conf" in result.stderr,
          "an unreadable configuration is EX_CONFIG, naming the file")


def test_names(spool):
    links = tempfile.mkdtemp(prefix="facteur-links-")
    try:
        for name in ("mailq", "newaliases"):
            os.symlink(SENDMAIL, os.path.join(links, name))
        mailq = os.path.join(links, "mailq")
        newaliases = os.path.join(links, "newaliases")

        result = spool.sendmail(program=mailq)
        stderr = result.stderr.decode(errors="replace")
        check(result.returncode == EX_UNAVAILABLE and stderr.startswith("mailq: cannot list the queue: qmgr is not running"),
              "mailq by name lists the queue through qmgr, and says qmgr is not running: " + stderr.strip())
        result = spool.sendmail("-bp")
        check(result.returncode == EX_UNAVAILABLE and b"qmgr is not running" in result.stderr, "sendmail -bp is mailq")
        result = spool.sendmail("-q")
        check(result.returncode == EX_UNAVAILABLE and b"qmgr is not running" in result.stderr,
              "sendmail -q asks qmgr to flush")

        aliases = os.path.join(spool.dir, "aliases")
        with open(aliases, "w") as f:
            f.write("# test\npostmaster: root\nteam: alice@example.org, bob@example.org\n")
        result = spool.sendmail(program=newaliases)
        out = result.stdout.decode()
        check(result.returncode == 0 and "2 aliases" in out and "facteur reload" in out,
              "newaliases by name checks the aliases file and says when it is read: " + out.strip())
        result = spool.sendmail("-bi")
        check(result.returncode == 0 and b"2 aliases" in result.stdout, "sendmail -bi is newaliases")
        with open(aliases, "w") as f:
            f.write("postmaster: root\n:include: /etc/passwd\nbroken line without colon\n")
        result = spool.sendmail(program=newaliases)
        stderr = result.stderr.decode()
        check(result.returncode == EX_DATAERR and stderr.startswith("newaliases: " + aliases) and "line" in stderr,
              "a broken aliases file is EX_DATAERR with its line: " + stderr.strip())
        os.unlink(aliases)
        result = spool.sendmail(program=newaliases)
        check(result.returncode == EX_NOINPUT and b"cannot read" in result.stderr, "a missing aliases file is EX_NOINPUT")
        result = spool.sendmail("-k", program=mailq)
        check(result.returncode == EX_USAGE and result.stderr.decode().startswith("mailq: unknown option -k"),
              "usage errors name the program as invoked")
    finally:
        shutil.rmtree(links, ignore_errors=True)


def test_unprivileged_user(spool):
    """DESIGN §1/§3: any local user may submit; maildrop/ (1733) lets them
    create a file but not list the folder."""
    if os.getuid() != 0:
        print("ok - (skipped: unprivileged submission needs root to switch users)")
        return
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        print("ok - (skipped: no nobody user)")
        return
    if not os.access(SENDMAIL, os.X_OK) or (os.stat(BIN).st_mode & stat.S_IXOTH) == 0:
        print("ok - (skipped: the build tree is not reachable by other users)")
        return
    result = spool.sendmail("bob@example.org", input=b"Subject: from nobody\n\nhi\n", user=nobody)
    if result.returncode == 126 or b"Permission denied" in result.stderr and b"maildrop" not in result.stderr:
        print("ok - (skipped: nobody cannot run the build tree's binary: " + result.stderr.decode(errors="replace") + ")")
        return
    check(result.returncode == 0, "nobody can submit: " + result.stderr.decode(errors="replace"))
    names = spool.dropped()
    check(len(names) == 1, "nobody's message is in maildrop/")
    info = os.stat(os.path.join(spool.maildrop, names[0]))
    check(info.st_uid == nobody.pw_uid, "the file belongs to the submitter (qmgr checks it against submitter_uid)")
    _, envelope, _, _ = spool.only_file()
    check(envelope["submitter_uid"] == str(nobody.pw_uid) and envelope["auth_user"] == "nobody",
          "the envelope names the submitting user")
    listing = subprocess.run(["ls", spool.maildrop], capture_output=True, preexec_fn=lambda: (os.setgid(nobody.pw_gid),
                                                                                              os.setuid(nobody.pw_uid)))
    check(listing.returncode != 0, "a user cannot list maildrop/")


def main():
    spool = Spool()
    try:
        test_dash_t(spool)
        test_operands_dash_i_and_options(spool)
        test_config_from_environment(spool)
        test_refusals(spool)
        test_names(spool)
        test_unprivileged_user(spool)
    finally:
        spool.cleanup()
    print("all sendmail tests passed")


if __name__ == "__main__":
    main()

"""The cross-host lab itself (lab.py, issue 5 "Tests across hosts"): two
facteur hosts in their own network namespaces with their own addresses and
port 25, a private nsd answering for test., mail between the hosts over
IPv4 and IPv6 by plain SMTP clients (no relayd needed), and a cleanup that
leaves no namespace, veth or /etc/netns entry behind."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, split_served_trace  # noqa: E402
from lab import Lab, check  # noqa: E402


def message(subject, body):
    return (f"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@a.test>\r\n\r\n{body}\r\n").encode()


def main():
    with Lab() as lab:
        a = lab.facteur("a")
        b = lab.facteur("b")
        lab.bare("x", mx=False)
        lab.record("nullmx.test. MX 0 .")
        lab.start()
        names = (lab.ns_name("a"), lab.ns_name("b"), lab.ns_name("net")) if lab.netns else ()
        print(f"lab mode: {'network namespaces' if lab.netns else 'loopback addresses'}; "
              f"a={a.address} b={b.address} dns={lab.dns_resolver}")

        # DNS: the private nsd answers the lab zone.
        ns = lab.ns_name("net") if lab.netns else None
        check(lab.dns_query(ns, "b.test", 15) == 1, "nsd answers the MX query for b.test with one record")
        check(lab.dns_query(ns, "mx.x.test", 1) == 1, "nsd answers the A query for mx.x.test")
        check(lab.dns_query(ns, "nullmx.test", 15) == 1, "nsd serves the null MX of nullmx.test")
        if lab.netns:
            check(lab.dns_query(ns, "mx.b.test", 28) == 1, "nsd answers the AAAA query for mx.b.test")
            # Programs inside a host find the lab DNS through /etc/netns/<ns>/resolv.conf.
            resolved = a.run(["getent", "ahostsv4", "mx.b.test"])
            check(b.address in resolved.stdout,
                  f"getent inside host a resolves mx.b.test to {b.address} through the lab DNS: "
                  f"{resolved.stdout.strip()!r} {resolved.stderr.strip()!r}")
            with open(f"/etc/netns/{lab.ns_name('a')}/resolv.conf") as f:
                check(f"nameserver {lab.dns_address}" in f.read(), "host a's resolv.conf names the lab DNS")

        # Each host's smtpd is on its own address, port 25.
        check(a.port_open(25) and b.port_open(25), "smtpd of a and b listen on their addresses, port 25")
        check(lab.hosts["x"].port_open(25, b.address) and not lab.hosts["x"].port_open(25),
              "from bare host x, b's port 25 answers and x's own does not")

        # A plain SMTP client inside a delivers to b's smtpd over the lab
        # network (IPv4): b sees a's address as the client.
        with lab.smtp("a", address=b.address) as smtp:
            code, greeting = smtp.ehlo("mx.a.test")
            check(code == 250 and b"mx.b.test" in greeting, f"b greets as mx.b.test: {greeting[:60]!r}")
            smtp.sendmail("alice@a.test", ["bob@b.test"], message("over ipv4", "hello from a"))
        if not b.facteur.wait_delivered("bob@b.test", 1, timeout=20):
            fail("bob@b.test got nothing from a over IPv4" + lab.excerpt("b", "bob@b.test"))
        delivered = b.facteur.delivered("bob@b.test")[0]
        split = split_served_trace(delivered.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
        check(split is not None and split[1] == message("over ipv4", "hello from a"),
              "the message arrives in b's Maildir byte for byte after b's trace headers")
        check(f"[{a.address}]".encode() in delivered,
              f"b's Received header names a's address {a.address}: {delivered[:400]!r}")

        if lab.netns:
            with lab.smtp("a", address=b.address6) as smtp:
                smtp.sendmail("alice@a.test", ["bob@b.test"], message("over ipv6", "hello again"))
            if not b.facteur.wait_delivered("bob@b.test", 2, timeout=20):
                fail("bob@b.test got nothing from a over IPv6" + lab.excerpt("b", "bob@b.test"))
            check(a.address6.encode() in b.facteur.delivered("bob@b.test")[1],
                  f"over IPv6, b's Received header names a's address {a.address6}")
            # swaks inside a namespace, the other way round.
            result = b.run(["swaks", "--server", a.address, "--port", "25", "--from", "bob@b.test",
                            "--to", "alice@a.test", "--helo", "mx.b.test", "--header", "Subject: by swaks",
                            "--body", "swaks body"])
            if result.returncode != 0:
                fail(f"expected swaks inside b to deliver to a; rc={result.returncode}\n{result.stdout[-1500:]}")
            check(True, "swaks inside b delivers to a")
            check(a.facteur.wait_delivered("alice@a.test", 1), "alice@a.test got the swaks message")
            # Trust: a client inside a on the namespace's loopback may relay.
            with lab.smtp("a") as smtp:
                code, _ = smtp.ehlo()
                code, reply = smtp.docmd("MAIL FROM:<alice@a.test>")
                code, reply = smtp.docmd("RCPT TO:<someone@elsewhere.test>")
                check(code == 250, f"a trusts its own loopback client for relaying: {code} {reply!r}")
                smtp.docmd("RSET")
            with lab.smtp("b", address=a.address) as smtp:
                smtp.ehlo()
                smtp.docmd("MAIL FROM:<bob@b.test>")
                code, reply = smtp.docmd("RCPT TO:<someone@elsewhere.test>")
                check(code == 554 or code // 100 == 5,
                      f"a refuses to relay for host b (not in its mynetworks): {code} {reply!r}")

    if names:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left = [name for name in names if name in listed]
        check(not left, f"the lab removed its namespaces: left {left}")
        check(not any(os.path.exists(f"/etc/netns/{name}") for name in names),
              "the lab removed its /etc/netns entries")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        check("v-a" not in links and "br0" not in links, "no lab veth or bridge in the root namespace")
    print("PASS")


if __name__ == "__main__":
    main()

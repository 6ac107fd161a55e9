"""Mail out by MX across lab hosts (issue 5): alice@a.test → bob@b.test found
by b.test's MX record and delivered into b's Maildir byte for byte, with
the relay log line on a (RFC 5321 §5.1 MX lookup); a domain with no MX but
an A record is delivered to that address (RFC 5321 §5.1 implicit MX); a
null MX (RFC 7505 §3) bounces at once with 5.1.10 and no connection."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, wait_for  # noqa: E402
from lab import check, Lab, relay_lines, reports, same_message, submit, text_message  # noqa: E402


def main():
    with Lab() as lab:
        a = lab.facteur("a")
        b = lab.facteur("b")
        # f sends over IPv4 only: relay= names b's IPv4 address, and b sees
        # f's bind_address.
        f = lab.facteur("f", relayd="ipv6 = no")
        d = lab.facteur("d", mx=False)
        lab.record(f"d.test. A {d.address}")
        if d.address6:
            lab.record(f"d.test. AAAA {d.address6}")
        lab.record("nullmx.test. MX 0 .")
        lab.start()

        # --- A → B via MX.
        sent = text_message("alice@a.test", "bob@b.test", "via MX", "Found by MX 10 mx.b.test.\r\n")
        submit(lab, "a", "alice@a.test", ["bob@b.test"], sent)
        if not b.facteur.wait_delivered("bob@b.test", 1, timeout=30):
            fail("expected bob@b.test to receive alice's message through b.test's MX within 30 s; nothing "
                 "arrived" + lab.excerpt("a", "bob@b.test") + lab.excerpt("b", "bob@b.test"))
        delivered = b.facteur.delivered("bob@b.test")[0]
        if not same_message(delivered, sent):
            fail(f"expected alice's message in b's Maildir byte for byte after the trace fields; got:\n"
                 f"{delivered[:1500].decode(errors='replace')}")
        check(True, "the message arrives in b's Maildir byte for byte after the trace fields")
        check(any(f"[{address}]".encode() in delivered for address in a.addresses),
              f"b's Received header names one of a's addresses {a.addresses} (relayd's bind_address)")
        relay = re.compile(r"\b([0-9A-Za-z]{6,}): to=<bob@b\.test>, relay=(" +
                           "|".join(re.escape(name) for name in b.relay_names()) +
                           r"), .*delay=[0-9.]+.*dsn=2\.0\.0, status=sent \(250")
        ok = wait_for(lambda: any(relay.search(line) for line in relay_lines(lab, "a", "bob@b.test")), 10)
        check(ok, "a logs 'QUEUEID: to=<bob@b.test>, relay=%s, delay=…, dsn=2.0.0, status=sent (250 …)'"
              % " or ".join(b.relay_names()) + ("" if ok else lab.excerpt("a", "bob@b.test")))

        # --- The same over IPv4 only ([relayd] ipv6 = no), from host f.
        sent = text_message("alice@f.test", "bob@b.test", "via MX over IPv4")
        submit(lab, "f", "alice@f.test", ["bob@b.test"], sent)
        if not b.facteur.wait_delivered("bob@b.test", 2, timeout=30):
            fail("expected bob@b.test to receive f's message over IPv4; nothing arrived"
                 + lab.excerpt("f", "bob@b.test"))
        delivered = b.facteur.delivered("bob@b.test")[1]
        check(same_message(delivered, sent), "the IPv4 delivery arrives byte for byte")
        check(f"[{f.address}]".encode() in delivered,
              f"b's Received header names f's IPv4 bind_address {f.address}")
        v4 = re.compile(r"\b[0-9A-Za-z]{6,}: to=<bob@b\.test>, relay=mx\.b\.test\[" + re.escape(b.address) +
                        r"\]:25, .*delay=[0-9.]+.*dsn=2\.0\.0, status=sent \(250")
        check(any(v4.search(line) for line in relay_lines(lab, "f", "bob@b.test")),
              f"f logs 'to=<bob@b.test>, relay=mx.b.test[{b.address}]:25, delay=…, dsn=2.0.0, status=sent (250 …)'"
              + lab.excerpt("f", "bob@b.test"))

        # --- No MX, only an A record: the domain itself is the mail server.
        sent = text_message("alice@a.test", "bob@d.test", "implicit MX")
        submit(lab, "a", "alice@a.test", ["bob@d.test"], sent)
        if not d.facteur.wait_delivered("bob@d.test", 1, timeout=30):
            fail("expected bob@d.test (no MX, A record %s) to be delivered to host d (RFC 5321 §5.1 implicit "
                 "MX); nothing arrived" % d.address + lab.excerpt("a", "bob@d.test"))
        check(same_message(d.facteur.delivered("bob@d.test")[0], sent),
              "the implicit-MX delivery arrives byte for byte")
        line = [l for l in relay_lines(lab, "a", "bob@d.test") if "status=sent" in l]
        targets = [f"[{address}]:25" for address in d.addresses]
        check(bool(line) and any(target in line[-1] for target in targets),
              f"a's log shows the relay to d.test's own address {targets}: {line[-1:]}")

        # --- Null MX: immediate bounce 5.1.10, no connection attempt.
        sent = text_message("alice@a.test", "nobody@nullmx.test", "null MX")
        submit(lab, "a", "alice@a.test", ["nobody@nullmx.test"], sent)
        got = a.facteur.wait_delivered("alice@a.test", 1, timeout=20)
        if not got:
            fail("expected an immediate bounce to alice@a.test for nobody@nullmx.test (RFC 7505 null MX, "
                 "5.1.10); none within 20 s" + lab.excerpt("a", "nullmx.test"))
        failed = reports(a.facteur.delivered("alice@a.test"), "failed")
        check(len(failed) == 1, f"alice got one failure report: {len(failed)}")
        report, recipients = failed[0]
        check(recipients and recipients[0].get("status") == "5.1.10",
              f"the report says Status: 5.1.10 for the null MX: {recipients}")
        check("nobody@nullmx.test" in recipients[0].get("final-recipient", ""),
              f"Final-Recipient is nobody@nullmx.test: {recipients}")
        lines = relay_lines(lab, "a", "nobody@nullmx.test")
        check(any("dsn=5.1.10" in l and "status=bounced" in l for l in lines),
              "a logs status=bounced, dsn=5.1.10 for the null MX" + lab.excerpt("a", "nullmx.test"))
        check(not any(re.search(r"relay=[^,\s]*\[", l) for l in lines) and not lab.log_lines("a", "connect to",
                                                                                            "nullmx"),
              "no connection was attempted for the null MX domain" + lab.excerpt("a", "nullmx.test"))
    print("PASS")


if __name__ == "__main__":
    main()

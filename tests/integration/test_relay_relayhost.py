"""A smarthost with AUTH across lab hosts (issue 5; RFC 6409 submission,
RFC 4954 AUTH over RFC 3207 STARTTLS): a has `relayhost = [mx.c.test]:587`
(no MX lookup for the brackets) and a credentials file only root can read
(`[mx.c.test]:587 alice@c.test:secret`, mode 0600; master opens it and
hands it to relayd). Mail from alice@a.test to bob@b.test goes to c's
submission port, authenticated as alice@c.test (c's log shows
sasl_username), and c relays it on to b by MX."""

import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail  # noqa: E402
from lab import check, Lab, same_message, submit, text_message  # noqa: E402


def main():
    with Lab() as lab:
        credentials = os.path.join(lab.dir, "relay_credentials")
        with open(credentials, "w") as f:
            f.write("[mx.c.test]:587 alice@c.test:secret\n")
        os.chmod(credentials, 0o600)
        a = lab.facteur("a", global_config="relayhost = [mx.c.test]:587",
                        relayd=f"relayhost_credentials = {credentials}\n"
                               f"tls_security_level = may")
        b = lab.facteur("b")
        c = lab.facteur("c", users={"alice@c.test": "secret", "bob@c.test": "bob-secret"})
        lab.start()
        check(os.stat(credentials).st_mode & 0o777 == 0o600 and os.stat(credentials).st_uid == 0,
              "the credentials file is mode 0600, owned by root")

        sent = text_message("alice@a.test", "bob@b.test", "through the smarthost")
        submit(lab, "a", "alice@a.test", ["bob@b.test"], sent)
        if not b.facteur.wait_delivered("bob@b.test", 1, timeout=40):
            fail("expected alice's message to reach bob@b.test through a's relayhost [mx.c.test]:587 with AUTH; "
                 "nothing arrived" + lab.excerpt("a", "bob@b.test") + lab.excerpt("c", "sasl")
                 + lab.excerpt("c", "bob@b.test"))
        delivered = b.facteur.delivered("bob@b.test")[0]
        if not same_message(delivered, sent):
            fail(f"expected the message on b byte for byte after the trace fields; got:\n"
                 f"{delivered[:1500].decode(errors='replace')}")
        check(True, "delivered on b byte for byte")
        check(b"by mx.c.test" in delivered and b"by mx.b.test" in delivered,
              "the trace shows the way a → c → b")
        a_sent = [l for l in lab.log_lines("a", "to=<bob@b.test>") if "status=sent" in l]
        check(bool(a_sent) and any("relay=" + name in a_sent[-1] for name in c.relay_names(587)),
              "a relayed to mx.c.test[…]:587, not to b.test's MX" + lab.excerpt("a", "bob@b.test"))
        auth = lab.log_lines("c", "sasl_username=alice@c.test")
        check(bool(auth), "c's log shows sasl_username=alice@c.test" + lab.excerpt("c", "sasl"))
        c_sent = [l for l in lab.log_lines("c", "to=<bob@b.test>") if "status=sent" in l]
        check(bool(c_sent) and "relay=mx.b.test[" in c_sent[-1], "c relayed on to mx.b.test by MX"
              + lab.excerpt("c", "bob@b.test"))
        plain = base64.b64encode(b"\0alice@c.test\0secret").decode()
        log = a.facteur.log() + c.facteur.log()
        check(":secret" not in log and plain not in log, "neither a nor c logs the password or the AUTH PLAIN blob")
    print("PASS")


if __name__ == "__main__":
    main()

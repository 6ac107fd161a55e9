"""MX failover across lab hosts (issue 5; RFC 5321 §5.1: "the SMTP client
SHOULD try at least two addresses", in preference order): c.test's MX 10
is host x where nothing listens on port 25, MX 20 is host c; mail from
alice@a.test to bob@c.test ends up on c, after a logged failed attempt on x."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail  # noqa: E402
from lab import check, Lab, same_message, submit, text_message  # noqa: E402


def main():
    with Lab() as lab:
        lab.facteur("a")
        x = lab.bare("x", mx=False)
        c = lab.facteur("c", mx=False)
        lab.record("c.test. MX 10 mx.x.test.")
        lab.record("c.test. MX 20 mx.c.test.")
        lab.start()
        check(not x.port_open(25), "nothing listens on the primary MX mx.x.test, port 25")

        sent = text_message("alice@a.test", "bob@c.test", "primary MX down")
        submit(lab, "a", "alice@a.test", ["bob@c.test"], sent)
        if not c.facteur.wait_delivered("bob@c.test", 1, timeout=40):
            fail("expected bob@c.test to be delivered on the secondary MX mx.c.test (MX 20) when the primary "
                 "mx.x.test (MX 10) refuses connections; nothing arrived within 40 s"
                 + lab.excerpt("a", "bob@c.test") + lab.excerpt("a", "mx.x.test"))
        check(same_message(c.facteur.delivered("bob@c.test")[0], sent), "delivered on c byte for byte")
        sent_lines = [l for l in lab.log_lines("a", "to=<bob@c.test>") if "status=sent" in l]
        check(bool(sent_lines) and f"relay=mx.c.test[" in sent_lines[-1],
              "a's log names mx.c.test as the relay of the delivery" + lab.excerpt("a", "bob@c.test"))
        check(bool(lab.log_lines("a", "mx.x.test")),
              "a's log mentions the failed attempt on the primary mx.x.test" + lab.excerpt("a", "mx.x"))
    print("PASS")


if __name__ == "__main__":
    main()

"""ETRN (RFC 1985) and `facteur queue flush DOMAIN` across lab hosts
(issue 5): b and c are down (nothing on port 25), mail for them waits on a
with a one-hour backoff; b comes up and `ETRN b.test` from a trusted client
of a's smtpd has it delivered within seconds; c comes up and
`facteur queue flush c.test` does the same."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, wait_for  # noqa: E402
from lab import check, Lab, same_message, submit, text_message  # noqa: E402


def deferred(lab, recipient):
    return [l for l in lab.log_lines("a", f"to=<{recipient}>") if "status=deferred" in l]


def main():
    with Lab() as lab:
        a = lab.facteur("a", qmgr="minimal_backoff_time = 1h\nmaximal_backoff_time = 2h")
        b = lab.facteur("b", autostart=False)
        c = lab.facteur("c", autostart=False)
        lab.start()

        sent_b = text_message("alice@a.test", "bob@b.test", "etrn")
        sent_c = text_message("alice@a.test", "bob@c.test", "flush")
        submit(lab, "a", "alice@a.test", ["bob@b.test"], sent_b)
        submit(lab, "a", "alice@a.test", ["bob@c.test"], sent_c)
        if not wait_for(lambda: deferred(lab, "bob@b.test") and deferred(lab, "bob@c.test"), 30):
            fail("expected both messages deferred on a while b and c are down"
                 + lab.excerpt("a", "bob@b.test") + lab.excerpt("a", "bob@c.test"))
        check(True, "mail for b.test and c.test deferred on a (hosts down)")

        # --- ETRN once b is up.
        lab.start_host("b")
        time.sleep(1)
        check(len(b.facteur.delivered("bob@b.test")) == 0, "nothing reaches b before ETRN (1 h backoff)")
        c_attempts = len(deferred(lab, "bob@c.test"))
        with lab.smtp("a") as smtp:
            smtp.ehlo("client.lab.test")
            code, reply = smtp.docmd("ETRN", "b.test")
        check(code in (250, 251, 252, 253), f"a answers ETRN b.test with 250/251/252/253 (RFC 1985 §5): "
              f"{code} {reply!r}")
        started = time.monotonic()
        if not b.facteur.wait_delivered("bob@b.test", 1, timeout=15):
            fail("expected ETRN b.test to have a retry bob@b.test at once; nothing on b within 15 s"
                 + lab.excerpt("a", "bob@b.test") + lab.excerpt("a", "ETRN"))
        check(same_message(b.facteur.delivered("bob@b.test")[0], sent_b),
              f"delivered on b {time.monotonic() - started:.1f} s after ETRN, byte for byte")
        check(len(c.facteur.delivered("bob@c.test")) == 0 and len(deferred(lab, "bob@c.test")) == c_attempts,
              "ETRN b.test did not retry the mail for c.test")

        # --- facteur queue flush c.test once c is up.
        lab.start_host("c")
        result = a.facteur.cli("queue", "flush", "c.test")
        check(result.returncode == 0, f"facteur queue flush c.test exits 0: {result.stdout}{result.stderr}")
        if not c.facteur.wait_delivered("bob@c.test", 1, timeout=15):
            fail("expected `facteur queue flush c.test` to have bob@c.test retried at once; nothing on c"
                 + lab.excerpt("a", "bob@c.test"))
        check(same_message(c.facteur.delivered("bob@c.test")[0], sent_c), "delivered on c after the flush")
    print("PASS")


if __name__ == "__main__":
    main()

"""STARTTLS between lab hosts (issue 5; RFC 3207, RFC 7672-style policy
levels as Postfix names them): b and c present certificates for mx.b.test
and mx.c.test signed by the lab's test CA.
- host a, [relayd] tls_security_level = verify without tls_ca_file, and
  tls_policy_maps "c.test may": mail to b.test stays deferred with a
  certificate verification reason (the system CA store does not know the lab
  CA); mail to c.test (may, per destination) is delivered over TLS anyway.
- host v, tls_security_level = verify and tls_ca_file = the lab CA: mail to
  b.test is delivered and b's Received header says ESMTPS with the TLS
  version."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, wait_for  # noqa: E402
from lab import check, Lab, queue_list, same_message, submit, text_message  # noqa: E402


def received_by(data, hostname):
    """The Received field added by `hostname` (unfolded), as bytes."""
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", data)
    for line in unfolded.split(b"\n"):
        if line.lower().startswith(b"received:") and b"by " + hostname.encode() in line:
            return line
    return b""


def main():
    with Lab() as lab:
        policy = os.path.join(lab.dir, "tls_policy")
        with open(policy, "w") as f:
            f.write("c.test may\n")
        os.chmod(policy, 0o644)
        a = lab.facteur("a", relayd=f"tls_security_level = verify\ntls_policy_maps = {policy}")
        lab.facteur("v", relayd=f"tls_security_level = verify\ntls_ca_file = {lab.ca_file}")
        b = lab.facteur("b")
        c = lab.facteur("c")
        lab.start()

        # --- verify with the lab CA: delivered, ESMTPS with the TLS version.
        sent = text_message("alice@v.test", "bob@b.test", "verified TLS")
        submit(lab, "v", "alice@v.test", ["bob@b.test"], sent)
        if not b.facteur.wait_delivered("bob@b.test", 1, timeout=30):
            fail("expected v (tls_security_level = verify, tls_ca_file = lab CA) to deliver to mx.b.test, whose "
                 "certificate the lab CA signed; nothing arrived" + lab.excerpt("v", "bob@b.test")
                 + lab.excerpt("v", "TLS") + lab.excerpt("v", "tls"))
        delivered = b.facteur.delivered("bob@b.test")[0]
        received = received_by(delivered, "mx.b.test")
        check(same_message(delivered, sent), "the verified delivery arrives byte for byte")
        match = re.search(rb"with ESMTPS.*\(using (TLSv1\.[23])", received)
        check(match is not None, f"b's Received header says ESMTPS and the TLS version: {received!r}")

        # --- may: delivered over TLS even without verification.
        sent = text_message("alice@a.test", "bob@c.test", "opportunistic TLS")
        submit(lab, "a", "alice@a.test", ["bob@c.test"], sent)
        if not c.facteur.wait_delivered("bob@c.test", 1, timeout=30):
            fail("expected a (policy map `c.test may`) to deliver to mx.c.test over unverified TLS; nothing "
                 "arrived" + lab.excerpt("a", "bob@c.test"))
        received = received_by(c.facteur.delivered("bob@c.test")[0], "mx.c.test")
        check(re.search(rb"with ESMTPS.*\(using TLSv1\.[23]", received) is not None,
              f"with `may` the delivery still used STARTTLS: {received!r}")

        # --- verify (the global level) without the lab CA: deferred, certificate reason.
        sent = text_message("alice@a.test", "bob@b.test", "unverifiable TLS")
        submit(lab, "a", "alice@a.test", ["bob@b.test"], sent)

        def deferred_lines():
            return [l for l in lab.log_lines("a", "to=<bob@b.test>") if "status=deferred" in l]
        if not wait_for(deferred_lines, 30):
            fail("expected a to defer bob@b.test (tls_security_level = verify, no tls_ca_file); no status=deferred "
                 "line" + lab.excerpt("a", "bob@b.test"))
        line = deferred_lines()[-1]
        check(re.search(r"certif|verif", line, re.IGNORECASE) is not None,
              f"the deferral gives a certificate verification reason: {line}")
        check(len(b.facteur.delivered("bob@b.test")) == 1, "nothing from a reached b without verification")
        listing = queue_list(a)
        check("bob@b.test" in listing, f"the message stays queued on a: {listing!r}")
    print("PASS")


if __name__ == "__main__":
    main()

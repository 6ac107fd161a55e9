"""Interoperability with Postfix as the receiving MTA (issue 5): host p
runs a private Postfix (Debian's package, its own config, queue and data
directories, virtual_mailbox_domains = p.test into a Maildir), found by
p.test's MX. facteur on a delivers to it; Postfix is told to hide 8BITMIME
(smtpd_discard_ehlo_keywords = 8bitmime), so an 8-bit message from a must
arrive converted to 7 bits, quoted-printable (RFC 6152 §3: no 8-bit data to
a server that did not announce 8BITMIME; RFC 2045 §6.7)."""

import os
import quopri
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import fail, wait_for  # noqa: E402
from lab import check, POSTFIX, Lab, same_message, submit, text_message  # noqa: E402


def main():
    if not os.access(POSTFIX, os.X_OK):
        fail("Debian's postfix package is not installed (run scripts/bootstrap)")
    with Lab() as lab:
        a = lab.facteur("a")
        lab.bare("p")
        lab.start()
        postfix = lab.postfix("p", main="smtpd_discard_ehlo_keywords = 8bitmime")
        postfix.start()

        # --- a plain 7-bit message: byte for byte.
        sent = text_message("alice@a.test", "bob@p.test", "to postfix")
        submit(lab, "a", "alice@a.test", ["bob@p.test"], sent)
        if not wait_for(lambda: postfix.delivered("bob"), 40):
            fail("expected facteur a to deliver bob@p.test to Postfix on mx.p.test via MX; Postfix's Maildir "
                 "stayed empty" + lab.excerpt("a", "bob@p.test") + "\n--- postfix maillog ---\n" +
                 postfix.log()[-3000:])
        delivered = postfix.delivered("bob")[0]
        check(same_message(delivered, sent), f"Postfix stored the message byte for byte: {delivered[:600]!r}")
        check(re.search(r"to=<bob@p\.test>.*status=sent", postfix.log()) is not None,
              "Postfix's log says status=sent for bob@p.test")
        line = [l for l in lab.log_lines("a", "to=<bob@p.test>") if "status=sent" in l]
        check(bool(line) and "relay=mx.p.test[" in line[-1] and "250" in line[-1],
              "a logs the relay to mx.p.test with Postfix's 250 reply" + lab.excerpt("a", "bob@p.test"))

        # --- 8-bit body to a server without 8BITMIME: quoted-printable.
        body = "Caf\u00e9 cr\u00e8me, d\u00e9j\u00e0 vu.\r\nSecond line stays.\r\n"
        sent = text_message("alice@a.test", "bob@p.test", "eight bit", body,
                            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 8bit\r\n")
        submit(lab, "a", "alice@a.test", ["bob@p.test"], sent, mail_options=["BODY=8BITMIME"])
        if not wait_for(lambda: len(postfix.delivered("bob")) >= 2, 40):
            fail("expected the 8-bit message to reach Postfix (converted); nothing arrived"
                 + lab.excerpt("a", "bob@p.test") + "\n--- postfix maillog ---\n" + postfix.log()[-3000:])
        delivered = [m for m in postfix.delivered("bob") if b"Subject: eight bit" in m]
        check(bool(delivered), "the 8-bit message is in Postfix's Maildir")
        data = delivered[0]
        check(all(byte < 128 for byte in data), "what Postfix received is 7-bit only")
        header, _, received_body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
        check(re.search(rb"(?im)^Content-Transfer-Encoding:\s*quoted-printable", header) is not None,
              f"Content-Transfer-Encoding became quoted-printable: {header[-400:]!r}")
        decoded = quopri.decodestring(received_body)
        check(decoded.replace(b"\r\n", b"\n") == body.encode().replace(b"\r\n", b"\n"),
              f"the body decodes back to the original UTF-8 text: {received_body!r}")
    print("PASS")


if __name__ == "__main__":
    main()

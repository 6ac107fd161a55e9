"""authd's SASL socket used by a real Postfix (Debian's postfix package),
configured with smtpd_sasl_type = dovecot, as DESIGN §4 promises: Postfix's
smtpd runs in stand-alone mode (-S) on a socketpair, and Python's smtplib
logs in through it with PLAIN and LOGIN."""

import os
import pwd
import smtplib
import socket
import subprocess
import sys

from harness import Instance, check

POSTFIX_SMTPD = "/usr/lib/postfix/sbin/smtpd"
MAIL_OWNER = "postfix"


class PostfixSmtpd:
    """A Postfix smtpd process talking SMTP over one end of a socketpair."""

    def __init__(self, config_dir):
        ours, theirs = socket.socketpair()
        env = dict(os.environ, MAIL_CONFIG=config_dir)
        # Postfix treats an smtpd -S not running as mail_owner as a local
        # "sendmail -bs" session and turns SASL off (SMTPD_STAND_ALONE), so
        # as root we run it as mail_owner, like master(8) would.
        owner = pwd.getpwnam(MAIL_OWNER) if os.getuid() == 0 else None

        def become_owner():
            if owner:
                os.setgroups([])
                os.setgid(owner.pw_gid)
                os.setuid(owner.pw_uid)

        self.process = subprocess.Popen([POSTFIX_SMTPD, "-S"], stdin=theirs.fileno(), stdout=theirs.fileno(),
                                        env=env, cwd=config_dir, preexec_fn=become_owner)
        theirs.close()
        ours.settimeout(30)
        self.smtp = smtplib.SMTP()
        self.smtp.sock = ours
        code, greeting = self.smtp.getreply()
        if code != 220:
            raise RuntimeError("Postfix greeting: %r" % greeting)

    def close(self):
        try:
            self.smtp.quit()
        except Exception:
            pass
        self.process.wait(10)


def postfix_config(instance):
    config_dir = os.path.join(instance.dir, "postfix")
    os.makedirs(os.path.join(config_dir, "queue"))
    with open(os.path.join(config_dir, "main.cf"), "w") as f:
        f.write(f"""compatibility_level = 3.6
queue_directory = {config_dir}/queue
data_directory = {config_dir}/data
myhostname = postfix.example.test
mail_owner = {MAIL_OWNER if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name}
mydestination =
local_recipient_maps =
alias_maps =
smtpd_tls_security_level = none
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {instance.sasl_socket}
""")
    with open("/etc/postfix/master.cf") as source, open(os.path.join(config_dir, "master.cf"), "w") as target:
        target.write(source.read())
    return config_dir


def main():
    if not os.access(POSTFIX_SMTPD, os.X_OK):
        # scripts/bootstrap installs postfix; a machine without it cannot
        # run this interoperability check.
        print("FAIL: Debian's postfix package is not installed (run scripts/bootstrap)", file=sys.stderr)
        sys.exit(1)
    with Instance() as instance:
        instance.cli("domain", "add", "example.test", check_rc=0)
        instance.cli("user", "add", "alice@example.test", "--password-stdin", input="alice-secret\n", check_rc=0)
        instance.start()
        config_dir = postfix_config(instance)

        postfix = PostfixSmtpd(config_dir)
        code, _ = postfix.smtp.ehlo("client.example.test")
        check(code == 250, "Postfix answers EHLO")
        mechanisms = postfix.smtp.esmtp_features.get("auth", "").split()
        check({"PLAIN", "LOGIN"} <= set(mechanisms),
              f"Postfix offers the mechanisms authd announced: {mechanisms}")
        postfix.smtp.user, postfix.smtp.password = "alice@example.test", "alice-secret"
        code, reply = postfix.smtp.auth("PLAIN", postfix.smtp.auth_plain)
        check(code == 235, f"AUTH PLAIN through Postfix and authd succeeds: {code} {reply}")
        postfix.close()

        postfix = PostfixSmtpd(config_dir)
        postfix.smtp.ehlo("client.example.test")
        postfix.smtp.user, postfix.smtp.password = "alice@example.test", "alice-secret"
        code, reply = postfix.smtp.auth("LOGIN", postfix.smtp.auth_login, initial_response_ok=False)
        check(code == 235, f"AUTH LOGIN (with CONT steps) succeeds: {code} {reply}")
        postfix.close()

        postfix = PostfixSmtpd(config_dir)
        postfix.smtp.ehlo("client.example.test")
        postfix.smtp.user, postfix.smtp.password = "alice@example.test", "wrong"
        try:
            code, reply = postfix.smtp.auth("PLAIN", postfix.smtp.auth_plain)
        except smtplib.SMTPAuthenticationError as refused:
            code, reply = refused.smtp_code, refused.smtp_error
        check(code == 535, f"a wrong password is refused by Postfix: {code} {reply}")
        postfix.close()
        check("service=smtp" in instance.log(), "authd logged Postfix's requests as service=smtp")


if __name__ == "__main__":
    main()
    print("1 passed, 0 failed")

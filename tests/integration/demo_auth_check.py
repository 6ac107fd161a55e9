"""Checks a demo user's password against a running scripts/demo instance
through authd's Dovecot-protocol socket: python3 demo_auth_check.py DEMO_DIR"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import DovecotAuthClient  # noqa: E402

demo = sys.argv[1] if len(sys.argv) > 1 else "demo"
client = DovecotAuthClient(os.path.join(demo, "run", "auth-client"))
with open(os.path.join(demo, "passwords")) as f:
    for line in f:
        address, password = line.split()
        reply = client.auth_plain(address, password)
        print(address, "->", "\t".join(reply))
client.close()

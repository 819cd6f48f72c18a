#!/usr/bin/python3
"""The README's 5-minute tour (scripts/tour.sh) against a fresh dev node.

It enrolls a device, requests and approves access, checks it as the gateway,
revokes it, rolls out a signed release and verifies the exported audit
ledger. The script stops at the first failing step, so a non-zero exit here
means the README no longer describes what warden does."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402

TOUR = os.path.join(wt.SRC, "scripts", "tour.sh")
TOUR_TIMEOUT_S = 120


class TourTest(unittest.TestCase):
    def test_tour(self):
        srv = wt.Server().start()
        try:
            env = dict(os.environ, WARDENCTL=wt.WARDENCTL)
            r = subprocess.run(["sh", TOUR, srv.addr, srv.certs], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=TOUR_TIMEOUT_S)
            out = r.stdout.decode(errors="replace")
            if r.returncode != 0:
                print(out[-6000:])
                print(srv.log_text()[-4000:])
            self.assertEqual(r.returncode, 0)
            self.assertIn("intact:", out)
            self.assertIn("tour: ok", out)
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/python3
"""Negative controls: the suite must be able to fail (issue 7).

Not named test_*.py: each case runs a real 5-node cluster for ~30 s, so it
is run by tests/jepsen/run-ci.sh, not by the checker's unit-test discovery.

1. Harness-side (always available): `--fault timeout-as-fail` makes the
   client record every indeterminate outcome as :fail, with 15 ms deadlines
   so many proposals time out client-side and then commit.  That is a real
   client bug; the checkers must catch what it leads to, through the real
   server: `ledger` finds :fail mutations in the ledger (failed-but-applied),
   `counter-freshness` finds REPLAY verdicts no recorded acceptance explains.
2. Server-side (needs a wardend built with the fault flags; skipped with a
   message otherwise): `--unsafe-fault ack-before-commit` must give `lost`
   ledger mutations under leader kills; `--unsafe-fault fresh-window-volatile`
   (telemetry windows not replicated: a new leader starts them empty) must
   give `accepted-twice` under leader kills.

Run: WARDEN_BUILD=build /usr/bin/python3 tests/jepsen/tests/negative_control.py -v
"""
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
JROOT = os.path.dirname(HERE)
SRC = os.path.abspath(os.path.join(JROOT, "..", ".."))
J = os.path.join(JROOT, "bin", "warden-jepsen")
BUILD = os.path.abspath(os.environ.get("WARDEN_BUILD", os.path.join(SRC, "build")))
WARDEND = os.path.join(BUILD, "wardend")
# One run: 25 s load + setup/heal/checks.
RUN_TIMEOUT_S = 150
TIME_LIMIT_S = os.environ.get("JEPSEN_NC_TIME_LIMIT", "25")


def run(*args):
    env = dict(os.environ, WARDEN_BUILD=BUILD)
    r = subprocess.run(["/usr/bin/python3", J, "--time-limit", TIME_LIMIT_S,
                        "--quiet-period", "3", "--concurrency", "8", *args],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    store = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else None
    results = ""
    if store and os.path.exists(os.path.join(store, "results.edn")):
        with open(os.path.join(store, "results.edn")) as f:
            results = f.read()
    return r.returncode, store, results, r.stderr


def has_unsafe_fault(name):
    try:
        r = subprocess.run([WARDEND, "--help"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    text = r.stdout + r.stderr
    return "--unsafe-fault" in text and name in text


class NegativeControl(unittest.TestCase):
    def expect_caught(self, anomaly, *args):
        rc, store, results, err = run(*args)
        msg = "store %s\n%s" % (store, err[-3000:])
        self.assertEqual(rc, 1, "expected INVALID (exit 1), got %d; %s" % (rc, msg))
        self.assertRegex(results, r":%s \d+" % re.escape(anomaly),
                         "checker did not report :%s; %s" % (anomaly, msg))
        self.assertIn(":valid? false", results)
        print("  caught :%s in %s" % (anomaly, store), file=sys.stderr)

    def test_ledger_timeout_as_fail(self):
        self.expect_caught("failed-but-applied", "--workload", "ledger",
                           "--nemesis", "none", "--fault", "timeout-as-fail", "--seed", "101")

    def test_freshness_timeout_as_fail(self):
        self.expect_caught("unexplained-replay", "--workload", "counter-freshness",
                           "--nemesis", "none", "--fault", "timeout-as-fail", "--seed", "102")

    def test_server_ack_before_commit(self):
        if not has_unsafe_fault("ack-before-commit"):
            self.skipTest("%s has no --unsafe-fault ack-before-commit (build with "
                          "-DWARDEN_FAULTS=ON); server-side negative control not run" % WARDEND)
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.expect_caught("lost", "--workload", "ledger", "--nemesis", "kill",
                           "--fault", "ack-before-commit", "--seed", "103")

    def test_server_fresh_window_volatile(self):
        if not has_unsafe_fault("fresh-window-volatile"):
            self.skipTest("%s has no --unsafe-fault fresh-window-volatile (build with "
                          "-DWARDEN_FAULTS=ON); server-side negative control not run" % WARDEND)
        self.expect_caught("accepted-twice", "--workload", "counter-freshness",
                           "--nemesis", "kill", "--fault", "fresh-window-volatile", "--seed", "104")


if __name__ == "__main__":
    unittest.main()

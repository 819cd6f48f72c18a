#!/usr/bin/python3
"""Negative controls: the suite must be able to fail (issue 7).

Not named test_*.py: each case runs a real 5-node cluster for ~30 s, so it
is run by tests/jepsen/run-ci.sh, not by the checker's unit-test discovery.

1. Harness-side (always available): `--fault timeout-as-fail` makes the
   client record every indeterminate outcome as :fail, with 15 ms deadlines
   so many proposals time out client-side and then commit.  That is a real
   client bug; the checkers must catch what it leads to, through the real
   server: `ledger` finds :fail mutations in the ledger (failed-but-applied),
   `counter-freshness` finds REPLAY verdicts no recorded acceptance explains,
   `grants` finds grant uses (final ListGrants) no recorded check explains.
2. Server-side (needs a wardend built with the fault flags; skipped with a
   message otherwise): `--unsafe-fault ack-before-commit` must give `lost`
   ledger mutations under leader kills; `--unsafe-fault fresh-window-volatile`
   (telemetry windows not replicated: a new leader starts them empty) must
   give `accepted-twice` under leader kills.

   The server-side controls run against a *separate* faults build, never
   the build under test: `$WARDEN_FAULTS_BUILD` (a build dir configured
   with -DWARDEN_FAULTS=ON) if set; else `$WARDEN_BUILD` if its wardend
   has the flag; else, with `JEPSEN_BUILD_FAULTS=1` (run-ci.sh sets it),
   this test configures and builds `<WARDEN_BUILD>-faults` itself
   (cmake -DWARDEN_FAULTS=ON, target wardend; incremental after the first
   time); otherwise they are skipped, saying so.

Run: WARDEN_BUILD=build /usr/bin/python3 tests/jepsen/tests/negative_control.py -v
     WARDEN_BUILD=build WARDEN_FAULTS_BUILD=build-faults ...   (server controls)
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
# Configure + build of the faults wardend (2 cores: a cold build ~4 min).
FAULTS_BUILD_TIMEOUT_S = 900
# One run: 25 s load + setup/heal/checks.
RUN_TIMEOUT_S = 150
TIME_LIMIT_S = os.environ.get("JEPSEN_NC_TIME_LIMIT", "25")


def run(*args, build=None):
    env = dict(os.environ, WARDEN_BUILD=build or BUILD)
    r = subprocess.run(["/usr/bin/python3", J, "--time-limit", TIME_LIMIT_S,
                        "--quiet-period", "3", "--concurrency", "8", *args],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    store = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else None
    results = ""
    if store and os.path.exists(os.path.join(store, "results.edn")):
        with open(os.path.join(store, "results.edn")) as f:
            results = f.read()
    return r.returncode, store, results, r.stderr


def has_unsafe_fault(name, build=BUILD):
    try:
        r = subprocess.run([os.path.join(build, "wardend"), "--help"], capture_output=True,
                           text=True, timeout=30)
    except OSError:
        return False
    text = r.stdout + r.stderr
    return "--unsafe-fault" in text and name in text


_FAULTS = {}


def faults_build():
    """The build dir whose wardend has --unsafe-fault (see the docstring),
    or (None, why)."""
    if "dir" in _FAULTS:
        return _FAULTS["dir"], _FAULTS["why"]
    d, why = None, None
    env = os.environ.get("WARDEN_FAULTS_BUILD")
    if env:
        d = os.path.abspath(env)
        if not has_unsafe_fault("", d):
            d, why = None, "$WARDEN_FAULTS_BUILD=%s: its wardend lacks --unsafe-fault" % env
    elif has_unsafe_fault("", BUILD):
        d = BUILD
    elif os.environ.get("JEPSEN_BUILD_FAULTS") == "1":
        out = BUILD.rstrip("/") + "-faults"
        try:
            for cmd in (["cmake", "-S", SRC, "-B", out, "-DWARDEN_FAULTS=ON"],
                        ["cmake", "--build", out, "-j2", "--target", "wardend"]):
                r = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=FAULTS_BUILD_TIMEOUT_S)
                if r.returncode != 0:
                    why = "faults build failed: %s" % (r.stdout + r.stderr)[-2000:]
                    break
            else:
                d = out
        except (OSError, subprocess.TimeoutExpired) as ex:
            why = "faults build failed: %r" % ex
    else:
        why = ("no faults build: set WARDEN_FAULTS_BUILD to a -DWARDEN_FAULTS=ON build dir, "
               "or JEPSEN_BUILD_FAULTS=1 to build <WARDEN_BUILD>-faults here")
    _FAULTS["dir"], _FAULTS["why"] = d, why
    return d, why


class NegativeControl(unittest.TestCase):
    def expect_caught(self, anomaly, *args, build=None):
        """anomaly: a kind, or a tuple of kinds any of which will do."""
        kinds = anomaly if isinstance(anomaly, tuple) else (anomaly,)
        rc, store, results, err = run(*args, build=build)
        msg = "store %s\n%s" % (store, err[-3000:])
        self.assertEqual(rc, 1, "expected INVALID (exit 1), got %d; %s" % (rc, msg))
        self.assertRegex(results, r":(%s) \d+" % "|".join(re.escape(k) for k in kinds),
                         "checker did not report :%s; %s" % (" or :".join(kinds), msg))
        self.assertIn(":valid? false", results)
        print("  caught :%s in %s" % (anomaly, store), file=sys.stderr)

    def test_ledger_timeout_as_fail(self):
        self.expect_caught("failed-but-applied", "--workload", "ledger",
                           "--nemesis", "none", "--fault", "timeout-as-fail", "--seed", "101")

    def test_freshness_timeout_as_fail(self):
        self.expect_caught("unexplained-replay", "--workload", "counter-freshness",
                           "--nemesis", "none", "--fault", "timeout-as-fail", "--seed", "102")

    def test_grants_timeout_as_fail(self):
        # Calls that time out client-side commit anyway.  Recorded as :fail:
        # a check's grant use nobody asked for (phantom-use), an Unlock that
        # "did not happen" followed by ALLOWs (allow-while-locked), ...
        self.expect_caught(("phantom-use", "allow-while-locked", "allow-after-lock-revoked",
                            "allow-after-revoke"), "--workload", "grants", "--nemesis", "none",
                           "--fault", "timeout-as-fail", "--seed", "106")

    def server_build(self, fault):
        d, why = faults_build()
        if d is None:
            self.skipTest("server-side negative control not run: %s" % why)
        if not has_unsafe_fault(fault, d):
            self.skipTest("%s/wardend has no --unsafe-fault %s" % (d, fault))
        return d

    def test_server_ack_before_commit(self):
        d = self.server_build("ack-before-commit")
        self.expect_caught("lost", "--workload", "ledger", "--nemesis", "kill:leader",
                           "--fault", "ack-before-commit", "--seed", "103", build=d)

    def test_server_ack_before_commit_register(self):
        # Acknowledged label writes lost across leader kills: a later read
        # sees an older value (WGL: not linearizable).
        d = self.server_build("ack-before-commit")
        self.expect_caught("nonlinearizable-key", "--workload", "register", "--nemesis",
                           "kill:leader", "--fault", "ack-before-commit", "--seed", "105", build=d)

    def test_server_fresh_window_volatile(self):
        d = self.server_build("fresh-window-volatile")
        self.expect_caught("accepted-twice", "--workload", "counter-freshness",
                           "--nemesis", "kill:all", "--fault", "fresh-window-volatile",
                           "--seed", "104", build=d)

if __name__ == "__main__":
    unittest.main()

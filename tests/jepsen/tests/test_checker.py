"""Unit tests for the Jepsen history tooling and the WGL checker.

Run:  /usr/bin/python3 -m unittest discover -s tests/jepsen/tests
"""

import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)                       # tests/jepsen
sys.path[:0] = [ROOT, HERE]

from jepsen import edn, history as H, wgl         # noqa: E402
from jepsen.edn import Keyword as K               # noqa: E402
import gen_history as G                           # noqa: E402

CHECK_LINEAR = os.path.join(ROOT, "bin", "check-linear")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable


# ---------------------------------------------------------------- helpers

def edn_hist(*lines):
    """Tiny DSL: '0 invoke write 1' -> an EDN op map line."""
    out = []
    for ln in lines:
        p, t, f, v = ln.split(None, 3)
        proc = p if p.startswith(":") else int(p)
        out.append("{:process %s, :type :%s, :f :%s, :value %s}" %
                   (proc, t, f, v))
    return "\n".join(out) + "\n"


def log_hist(*lines):
    out = []
    for ln in lines:
        p, t, f, v = ln.split(None, 3)
        out.append("INFO  jepsen.util - %s\t:%s\t:%s\t%s" % (p, t, f, v))
    return "\n".join(out) + "\n"


def verdict(text, **kw):
    return wgl.check(text, **kw).valid


def run_cli(text, *args, suffix=".edn"):
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as f:
        f.write(text)
        path = f.name
    try:
        p = subprocess.run([PY, CHECK_LINEAR] + list(args) + [path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120)
        return p.returncode, p.stdout, p.stderr
    finally:
        os.unlink(path)


class BothFormats(object):
    """Mixin: assert a verdict on the same history in both formats."""

    def assertVerdict(self, expected, lines, **kw):
        for fmt, text in (("edn", edn_hist(*lines)),
                          ("log", log_hist(*lines))):
            r = wgl.check(text, **kw)
            self.assertIs(r.valid, expected,
                          "%s format:\n%s\n%s" % (fmt, text, r.report()))
            self.assertEqual(H.detect_format(text), fmt)
        return r


# ---------------------------------------------------------------- EDN

class TestEdn(unittest.TestCase):
    def test_scalars(self):
        self.assertEqual(edn.loads_all(
            'nil true false 42 -7 12N 1.5 2e3 3.0M 1/2 "a\\"b\\n\\u0041"'),
            [None, True, False, 42, -7, 12, 1.5, 2000.0,
             edn.Decimal("3.0"), edn.Fraction(1, 2), 'a"b\nA'])

    def test_collections_and_keywords(self):
        v = edn.loads('{:a [1 2], :b (3 4), :c #{5}, "k" {:n nil}}')
        self.assertEqual(v[K("a")], (1, 2))
        self.assertEqual(v[K("b")], (3, 4))
        self.assertEqual(v[K("c")], frozenset([5]))
        self.assertEqual(v["k"], {K("n"): None})
        self.assertIs(K("a"), K("a"))
        self.assertEqual(edn.loads("foo/bar"), edn.Symbol("foo/bar"))

    def test_comments_commas_discard_chars(self):
        self.assertEqual(edn.loads_all("; c\n1,,2 #_ 3 #_[4 5] \\a \\space"),
                         [1, 2, "a", " "])

    def test_tags_and_records(self):
        a, b, c = edn.loads_all(
            '#inst "2024-01-01T00:00:00Z" #uuid "f81d4fae-7dec-11d0"'
            ' #jepsen.history.Op{:index 0, :type :invoke}')
        self.assertEqual(a, edn.Tagged("inst", "2024-01-01T00:00:00Z"))
        self.assertEqual(b.tag, "uuid")
        self.assertEqual(c, {K("index"): 0, K("type"): K("invoke")})

    def test_errors_have_line_and_column(self):
        cases = {
            "{:a 1": (1, 1),
            "[1 2\n 3)": (2, 3),
            '{:a "x}': (1, 5),
            "\n  {:a}": (2, 3),
            "[1 2] ]": (1, 7),
            "12abc": (1, 1),
            '"bad \\q"': (1, 6),
            "#_": (1, 1),
        }
        for text, (line, col) in cases.items():
            with self.assertRaises(edn.EdnError, msg=text) as cm:
                edn.loads_all(text)
            self.assertEqual((cm.exception.line, cm.exception.col),
                             (line, col), "%r: %s" % (text, cm.exception))

    def test_roundtrip(self):
        v = {K("process"): 3, K("type"): K("ok"), K("value"): (1, None),
             K("s"): 'q"x'}
        self.assertEqual(edn.loads(edn.dumps(v)), v)


# ---------------------------------------------------------------- parsing

class TestParsing(unittest.TestCase):
    def test_log_format_details(self):
        text = ("2024-01-01 INFO  jepsen.core - Running test\n"
                "INFO  jepsen.util - 3\t:invoke\t:cas\t[1 4]\n"
                "INFO  jepsen.util - :nemesis\t:info\t:start\t"
                "[:isolated {\"n1\" #{\"n2\"}}]\n"
                "INFO  jepsen.util - 3   :fail   :cas   [1 4]   :mismatch\n"
                "INFO  jepsen.util - 3\t:invoke\t:write\t2\n"
                "INFO  jepsen.util - 3\t:info\t:write\t:timed-out\n")
        evs = H.parse(text)
        self.assertEqual([(e.process, e.type, e.f) for e in evs],
                         [(3, "invoke", "cas"), (K("nemesis"), "info",
                                                 "start"),
                          (3, "fail", "cas"), (3, "invoke", "write"),
                          (3, "info", "write")])
        self.assertEqual(evs[0].value, (1, 4))
        self.assertEqual(evs[2].error, K("mismatch"))
        self.assertEqual(evs[0].line, 2)
        ops = H.pair(evs, fs={"read", "write", "cas"})
        # :fail cas removed; :info write keeps its invoke value
        self.assertEqual([(o.f, o.status, o.value) for o in ops],
                         [("write", "info", 2)])

    def test_edn_vector_and_records(self):
        text = ("[#jepsen.history.Op{:index 0 :time 1 :type :invoke "
                ":process 0 :f :write :value 1}\n"
                " #jepsen.history.Op{:index 1 :time 2 :type :ok "
                ":process 0 :f :write :value 1}\n"
                " {:type :invoke :process 1 :f :read :value nil}\n"
                " {:type :ok :process 1 :f :read :value 1}]\n")
        evs = H.parse(text)
        self.assertEqual([e.line for e in evs], [1, 2, 3, 4])
        self.assertTrue(wgl.check(text).valid)
        self.assertEqual(wgl.check(text.replace(":value 1}]",
                                                ":value 2}]")).valid, False)

    def test_python_op_dicts(self):
        ops = [{"process": 0, "type": "invoke", "f": "write", "value": 1},
               {"process": 0, "type": "ok", "f": "write", "value": 1},
               {"process": 1, "type": "invoke", "f": "read", "value": None},
               {"process": 1, "type": "ok", "f": "read", "value": 1}]
        self.assertTrue(wgl.check(ops).valid)
        ops[-1] = dict(ops[-1], value=[7][0])
        r = wgl.check(ops)
        self.assertFalse(r.valid)
        self.assertIn("read 7", r.report())

    def test_pairing_semantics(self):
        evs = H.parse(edn_hist(
            "0 invoke write 1",
            "1 invoke write 2",
            "0 info write 1",     # crashed
            "0 invoke read nil",  # id reused after :info: a fresh op
            "1 fail write 2",     # removed
            "0 ok read 1",
            "2 invoke read nil",  # info read: dropped
            "2 info read nil",
            "3 invoke cas [1 5]"))  # never completes: :info
        ops = H.pair(evs)
        self.assertEqual([(o.process, o.f, o.status, o.value, o.ret is None)
                          for o in ops],
                         [(0, "write", "info", 1, True),
                          (0, "read", "ok", 1, False),
                          (3, "cas", "info", (1, 5), True)])


# ---------------------------------------------------------------- verdicts

class TestValidHistories(BothFormats, unittest.TestCase):
    def test_sequential(self):
        self.assertVerdict(True, [
            "0 invoke read nil", "0 ok read nil",
            "0 invoke write 1", "0 ok write 1",
            "1 invoke read nil", "1 ok read 1",
            "1 invoke cas [1 2]", "1 ok cas [1 2]",
            "0 invoke read nil", "0 ok read 2"])

    def test_concurrent_writes_read_sees_either(self):
        for seen in (1, 2):
            self.assertVerdict(True, [
                "0 invoke write 1", "1 invoke write 2",
                "2 invoke read nil", "2 ok read %d" % seen,
                "0 ok write 1", "1 ok write 2"])
        # after both completed, a read may still see either (order unknown)
        for seen in (1, 2):
            self.assertVerdict(True, [
                "0 invoke write 1", "1 invoke write 2",
                "0 ok write 1", "1 ok write 2",
                "2 invoke read nil", "2 ok read %d" % seen])

    def test_cas_chain(self):
        self.assertVerdict(True, [
            "0 invoke write 0", "0 ok write 0",
            "1 invoke cas [0 1]", "2 invoke cas [1 2]",
            "3 invoke cas [2 3]",
            "3 ok cas [2 3]", "2 ok cas [1 2]", "1 ok cas [0 1]",
            "4 invoke cas [0 9]", "4 fail cas [0 9]",
            "4 invoke read nil", "4 ok read 3"])

    def test_info_write_that_happened(self):
        self.assertVerdict(True, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke write 2", "1 info write :timed-out",
            "0 invoke read nil", "0 ok read 1",   # not yet...
            "0 invoke read nil", "0 ok read 2",   # ...then it happened
            "0 invoke read nil", "0 ok read 2"])

    def test_info_write_that_never_happened(self):
        self.assertVerdict(True, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke write 2", "1 info write 2",
            "0 invoke read nil", "0 ok read 1",
            "0 invoke read nil", "0 ok read 1"])

    def test_info_cas_that_never_happened_and_unfinished_ops(self):
        self.assertVerdict(True, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke cas [5 6]", "1 info cas [5 6]",
            "2 invoke write 3",                  # never completes
            "0 invoke read nil", "0 ok read 1"])

    def test_nil_reads_before_writes(self):
        self.assertVerdict(True, [
            "0 invoke read nil", "1 invoke write 4",
            "0 ok read nil", "1 ok write 4",
            "0 invoke read nil", "0 ok read 4"])

    def test_fail_ops_ignored(self):
        self.assertVerdict(True, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke write 2", "1 fail write 2",
            "2 invoke cas [1 3]", "2 fail cas [1 3]",
            "0 invoke read nil", "0 ok read 1"])

    def test_process_reuses_id_after_info(self):
        self.assertVerdict(True, [
            "0 invoke write 1", "0 info write 1",
            "0 invoke write 2", "0 ok write 2",
            "1 invoke read nil", "1 ok read 1"])   # the crashed write landed

    def test_nemesis_ignored(self):
        self.assertVerdict(True, [
            ":nemesis info start nil", "0 invoke write 1",
            ":nemesis info stop nil", "0 ok write 1",
            "1 invoke read nil", "1 ok read 1"])

    def test_register_model(self):
        self.assertVerdict(True, ["0 invoke write 1", "0 ok write 1",
                                  "0 invoke read nil", "0 ok read 1"],
                           model="register")


class TestInvalidHistories(BothFormats, unittest.TestCase):
    def test_lost_write(self):
        r = self.assertVerdict(False, [
            "0 invoke write 1", "0 ok write 1",
            "0 invoke write 2", "0 ok write 2",
            "1 invoke read nil", "1 ok read 1"])
        k = r.failures[0]
        self.assertEqual((k.failed_op.f, k.failed_op.value), ("read", 1))
        self.assertEqual(k.state, 2)
        self.assertEqual((k.failed_op.call_line, k.failed_op.ret_line),
                         (5, 6))
        self.assertIn("read 1, but the register is 2", r.report())

    def test_stale_read(self):
        self.assertVerdict(False, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke write 2", "1 ok write 2",
            "2 invoke read nil", "2 ok read 2",
            "3 invoke read nil", "3 ok read 1"])

    def test_cas_anomaly_two_successes_from_same_value(self):
        r = self.assertVerdict(False, [
            "0 invoke write 0", "0 ok write 0",
            "1 invoke cas [0 1]", "2 invoke cas [0 2]",
            "1 ok cas [0 1]", "2 ok cas [0 2]"])
        self.assertIn("cas expects 0", r.report())
        self.assertVerdict(False, [
            "0 invoke write 0", "0 ok write 0",
            "1 invoke cas [0 1]", "1 ok cas [0 1]",
            "2 invoke cas [0 2]", "2 ok cas [0 2]"])

    def test_read_of_value_never_written(self):
        self.assertVerdict(False, [
            "0 invoke write 1", "1 invoke read nil",
            "1 ok read 7", "0 ok write 1"])

    def test_nil_read_after_write_strict_and_knossos(self):
        lines = ["0 invoke write 1", "0 ok write 1",
                 "1 invoke read nil", "1 ok read nil"]
        self.assertVerdict(False, lines)
        self.assertVerdict(True, lines, nil_read_any=True)

    def test_failed_write_must_not_be_seen(self):
        self.assertVerdict(False, [
            "0 invoke write 1", "0 ok write 1",
            "1 invoke write 2", "1 fail write 2",
            "0 invoke read nil", "0 ok read 2"])

    def test_read_before_write_invoked(self):
        self.assertVerdict(False, [
            "1 invoke read nil", "1 ok read 1",
            "0 invoke write 1", "0 ok write 1"])


class TestIndependentKeys(unittest.TestCase):
    LINES = [
        "0 invoke write [1 1]", "1 invoke write [2 5]",
        "0 ok write [1 1]", "1 ok write [2 5]",
        "2 invoke cas [1 [1 3]]", "2 ok cas [1 [1 3]]",
        "3 invoke read [2 nil]", "3 ok read [2 5]",
        "0 invoke read [1 nil]", "0 ok read [1 3]",
        "1 invoke read [3 nil]", "1 ok read [3 nil]"]

    def test_split_valid(self):
        for text in (edn_hist(*self.LINES), log_hist(*self.LINES)):
            r = wgl.check(text)
            self.assertTrue(r.valid, r.report())
            self.assertEqual(sorted(k.key for k in r.keys), [1, 2, 3])
            self.assertTrue(r.independent)

    def test_split_invalid_key_reported(self):
        lines = list(self.LINES)
        lines[7] = "3 ok read [2 1]"     # key 2 never had 1 (key 1 did)
        for text in (edn_hist(*lines), log_hist(*lines)):
            r = wgl.check(text)
            self.assertFalse(r.valid)
            self.assertEqual([k.key for k in r.failures], [2])
            self.assertIn("key 2: NOT linearizable", r.report())
        # without splitting, the same ops on one register are a different
        # (and here also invalid) question; --independent no must not crash
        self.assertIsNotNone(wgl.check(edn_hist(*lines),
                                       independent="no").valid)


# ---------------------------------------------------------------- CLI

class TestCli(unittest.TestCase):
    def test_exit_codes_and_summary(self):
        rc, out, err = run_cli(edn_hist("0 invoke write 1", "0 ok write 1"))
        self.assertEqual(rc, 0, err)
        self.assertIn("linearizable: 1 ops checked", out)
        self.assertIn("1 key", out)
        rc, out, err = run_cli(log_hist(
            "0 invoke write 1", "0 ok write 1",
            "0 invoke read nil", "0 ok read 2"), suffix=".log")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("could not linearize: process 0 :ok :read 2", out)
        self.assertIn("failing window: lines 3-4", out)
        rc, out, err = run_cli(edn_hist("0 invoke write 1", "0 ok write 1"),
                               "--model", "register", "-q")
        self.assertEqual(rc, 0, err)

    def test_malformed_exit_2(self):
        cases = [
            ("{:process 0 :type :invoke :f :write :value 1}\n"
             "{:process 0 :type :ok :f :write :value 1\n", "2:1"),
            ("{:process 0 :type :invoke :f :write :value [1 2}\n", "1:48"),
            ("{:process 0 :type :bogus :f :write :value 1}\n", ":1:1"),
            ("{:process 0 :type :ok :f :write :value 1}\n",
             "no outstanding invoke"),
            ("{:process 0 :f :write}\n", "valid :type"),
            ("[1 2 3]\n", "expected an op map"),
            ('{:process 0 :type :invoke :f :write :value "x}\n',
             "unterminated string"),
            ("INFO  jepsen.util - 0\t:invoke\t:write\t[1\n", ":1:"),
            ("{:process 0 :type :invoke :f :incr :value 1}\n",
             "not known to the model"),
            ("", "empty history"),
            ("{:process 0 :type :invoke :f :cas :value 3}\n"
             "{:process 0 :type :ok :f :cas :value 3}\n", "[from to]"),
        ]
        for text, needle in cases:
            rc, out, err = run_cli(text)
            self.assertEqual(rc, 2, "%r -> rc %d %s %s" % (text, rc, out,
                                                           err))
            self.assertIn(needle, err, text)
        rc, out, err = run_cli(edn_hist("0 invoke cas [1 2]",
                                        "0 ok cas [1 2]"),
                               "--model", "register")
        self.assertEqual(rc, 2, out + err)
        p = subprocess.run([PY, CHECK_LINEAR, "/nonexistent/h.edn"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.returncode, 2)


# ---------------------------------------------------------------- big

class TestLargeHistory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hist = G.simulate(n_procs=5, ops_per_proc=2000, seed=7,
                              info_rate=0.01)

    def _check_file(self, hist, fmt):
        text = G.to_edn_lines(hist) if fmt == "edn" else \
            G.to_log_lines(hist)
        with tempfile.NamedTemporaryFile("w", suffix="." + fmt,
                                         delete=False) as f:
            f.write(text)
            path = f.name
        try:
            t0 = time.monotonic()
            r = wgl.check(path)
            dt = time.monotonic() - t0
        finally:
            os.unlink(path)
        return r, dt

    def test_valid_large_history_fast(self):
        for fmt in ("edn", "log"):
            r, dt = self._check_file(self.hist, fmt)
            self.assertTrue(r.valid, r.report())
            self.assertEqual(r.n_events, 20000 + 0)
            self.assertLess(dt, 10.0)
            sys.stderr.write("\n  [%s] %s; wall %.2f s incl. parsing "
                             "(%.0f ops/s)\n" % (fmt, r.summary(), dt,
                                                 r.n_ops / dt))

    def test_corrupted_read_detected(self):
        bad, idx = G.corrupt_stale_read(self.hist, seed=3)
        r, dt = self._check_file(bad, "edn")
        self.assertFalse(r.valid)
        self.assertLess(dt, 10.0)
        k = r.failures[0]
        # the reported op is the corrupted read (line = history position)
        self.assertEqual(k.failed_op.ret_line, idx + 1)
        self.assertEqual(k.failed_op.value, bad[idx][K("value")])

    def test_independent_large_history(self):
        h = G.simulate(n_procs=10, ops_per_proc=1000, seed=11, keys=8,
                       values=5, info_rate=0.02, nemesis_every=50)
        t0 = time.monotonic()
        r = wgl.check(h)
        self.assertTrue(r.valid, r.report())
        self.assertEqual(len(r.keys), 8)
        self.assertLess(time.monotonic() - t0, 10.0)


# ---------------------------------------------------------------- reference

def brute_force(ops, initial=None):
    """Reference checker for tiny histories: some subset of the :info ops
    plus every :ok op, in some order consistent with real time, is a legal
    sequential cas-register execution."""
    ok = [o for o in ops if o.status == "ok"]
    info = [o for o in ops if o.status != "ok"]

    def legal(seq):
        for i, a in enumerate(seq):
            for b in seq[i + 1:]:
                if b.ret is not None and b.ret < a.call:
                    return False              # b finished before a began
        v = initial
        for o in seq:
            if o.f == "read":
                if o.value != v:
                    return False
            elif o.f == "write":
                v = o.value
            else:
                if v != o.value[0]:
                    return False
                v = o.value[1]
        return True

    for r in range(len(info) + 1):
        for sub in itertools.combinations(info, r):
            for perm in itertools.permutations(ok + list(sub)):
                if legal(perm):
                    return True
    return False


def random_tiny_history(rng):
    """A random little history (3 processes, <= 6 ops): sometimes from the
    atomic-register simulator, sometimes mutated, sometimes pure noise."""
    kind = rng.randrange(3)
    if kind < 2:
        h = G.simulate(n_procs=3, ops_per_proc=2, seed=rng.randrange(10**9),
                       values=3, info_rate=0.3)
        if kind == 1:
            idx = [i for i, op in enumerate(h)
                   if op[K("type")] != K("invoke")]
            if idx:
                i = rng.choice(idx)
                v = h[i][K("value")]
                nv = rng.choice([None, 0, 1, 2])
                h[i] = dict(h[i])
                h[i][K("value")] = (v[0], nv) if isinstance(v, tuple) \
                    else nv
        return h
    h, pending, n = [], {}, 0
    while n < 6 or pending:
        idle = [p for p in range(3) if p not in pending]
        if n < 6 and idle and (not pending or rng.random() < 0.5):
            p = rng.choice(idle)
            f = rng.choice(["read", "write", "cas"])
            v = None if f == "read" else rng.randrange(3) if f == "write" \
                else (rng.randrange(3), rng.randrange(3))
            h.append({K("process"): p, K("type"): K("invoke"),
                      K("f"): K(f), K("value"): v})
            pending[p] = (f, v)
            n += 1
        else:
            p = rng.choice(sorted(pending))
            f, v = pending.pop(p)
            if rng.random() < 0.08:
                continue                      # never completes
            t = rng.choice(["ok", "ok", "ok", "fail", "info"])
            if f == "read" and t == "ok":
                v = rng.choice([None, 0, 1, 2])
            h.append({K("process"): p, K("type"): K(t), K("f"): K(f),
                      K("value"): v})
    return h


class TestAgainstBruteForce(unittest.TestCase):
    def test_brute_force_sanity(self):
        def ops(*lines):
            return H.pair(H.parse(edn_hist(*lines)))
        self.assertTrue(brute_force(ops("0 invoke write 1", "0 ok write 1",
                                        "1 invoke read nil",
                                        "1 ok read 1")))
        self.assertFalse(brute_force(ops("0 invoke write 1", "0 ok write 1",
                                         "1 invoke read nil",
                                         "1 ok read nil")))

    def test_random_cross_check(self):
        rng = random.Random(20240601)
        counts = {True: 0, False: 0}
        for i in range(300):
            h = random_tiny_history(rng)
            ops = H.pair(H.normalize(h))
            expect = brute_force(ops)
            got = wgl.check(h).valid
            raw = wgl.check_key(ops, prune=False).valid
            msg = "history %d:\n%s\n%s" % (
                i, G.to_edn_lines(h), wgl.check(h).report())
            self.assertIs(got, expect, msg)
            self.assertIs(raw, expect, "(unpruned) " + msg)
            counts[expect] += 1
        sys.stderr.write("\n  cross-check: %d valid, %d invalid\n" %
                         (counts[True], counts[False]))
        self.assertGreater(counts[True], 50)
        self.assertGreater(counts[False], 50)


class TestResultsEdn(unittest.TestCase):
    def test_to_edn_map(self):
        r = wgl.check(edn_hist("0 invoke write 1", "0 ok write 1",
                               "1 invoke read nil", "1 ok read 2"))
        m = edn.loads(edn.dumps(r.to_edn_map()))
        self.assertIs(m[K("valid?")], False)
        self.assertEqual(m[K("anomalies")][0][K("op")][K("value")], 2)


if __name__ == "__main__":
    unittest.main()

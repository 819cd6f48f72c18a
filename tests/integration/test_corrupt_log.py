"""A corrupt Raft log is a loud start-up error (issue 3), and the documented
recovery (docs/consensus.md, "Recovery from a corrupt log") works.

  SingleNodeTest   `wardend --dev`: enroll, SIGTERM, flip bytes in the middle
                   of the newest closed raft_uv segment, start again. The
                   process must exit 1 within CORRUPT_EXIT_S with a JSON
                   error line naming the raft directory, the segment and the
                   corruption; the raft directory (every file, byte for byte)
                   is unchanged afterwards: no silent truncation or repair.
                   A second start fails the same way. A one-node cluster has
                   no peer to recover from, so the procedure stops there.
  ClusterTest      3 nodes (cluster.py), small snapshot settings: the same
                   corruption on a follower, the same loud failure; then the
                   documented procedure, step by step, with wardenctl:
                   `cluster remove ID`, move the data dir aside, start the
                   node empty with --join, `cluster add ID PEER CLIENT`. The
                   node becomes a voter again and catches up by snapshot
                   install; every device is present and identical on all
                   three.

raft_uv file names: closed segments are FIRST-LAST (16 digits each, e.g.
0000000000000002-0000000000000005), open ones open-N; a graceful stop
closes the open segment, so after SIGTERM the newest entries sit in the
newest closed segment.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
from cluster import grpc, inv_pb2, cluster_pb2  # noqa: E402

wt = ct.wt

# ---- limits ---------------------------------------------------------------------
# From exec to exit on a corrupt log: cert reuse + LMDB open + segment load.
# It takes well under a second; the bound only has to catch a hang (a node
# that starts serving, or retries, instead of failing).
CORRUPT_EXIT_S = 15.0
# Devices enrolled before the corruption (single node / cluster).
N_DEVICES = 8
# Cluster: snapshot after this many entries, keep this many: the re-added
# node must come back by snapshot install, as the doc says.
SNAP_THRESHOLD = 16
SNAP_TRAILING = 4
# Entries written after the removal, well past one snapshot threshold.
N_AFTER = 3 * SNAP_THRESHOLD
# wardenctl call bound; promotion of the re-added node to voter.
CLI_TIMEOUT_S = 60.0
MEMBER_TIMEOUT_S = 30.0
# Bytes flipped in the middle of the segment.
FLIP_BYTES = 8

SEGMENT_RE = re.compile(r"^(\d{16})-(\d{16})$")


def closed_segments(raft_dir):
    """Closed segment names, oldest first (by first index)."""
    names = [n for n in os.listdir(raft_dir) if SEGMENT_RE.match(n)]
    return sorted(names, key=lambda n: int(SEGMENT_RE.match(n).group(1)))


def dir_digest(d):
    """{name: (size, sha256)} of every file in d."""
    out = {}
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        with open(p, "rb") as f:
            b = f.read()
        out[n] = (len(b), hashlib.sha256(b).hexdigest())
    return out


def flip_middle(path):
    """XOR FLIP_BYTES bytes in the middle of the file with 0xff."""
    with open(path, "r+b") as f:
        b = bytearray(f.read())
        if len(b) < 2 * FLIP_BYTES + 8:
            raise AssertionError("%s: only %d bytes" % (path, len(b)))
        mid = len(b) // 2
        for i in range(mid, mid + FLIP_BYTES):
            b[i] ^= 0xFF
        f.seek(0)
        f.write(b)
        f.flush()
        os.fsync(f.fileno())
    return mid


def json_lines(path):
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


class CorruptLogChecks:
    """Shared assertions (mixed into both test classes)."""

    def corrupt_newest(self, raft_dir):
        segs = closed_segments(raft_dir)
        self.assertTrue(segs, "no closed segment in %s: %s" % (raft_dir, os.listdir(raft_dir)))
        seg = segs[-1]
        mid = flip_middle(os.path.join(raft_dir, seg))
        print("\n  corrupted %s at byte %d (%d bytes flipped); files: %s"
              % (seg, mid, FLIP_BYTES, sorted(os.listdir(raft_dir))), file=sys.stderr)
        return seg

    def assert_loud_failure(self, rc, took, log, raft_dir, seg):
        self.assertIsNotNone(rc, "still running %.0fs after start on a corrupt log"
                             % CORRUPT_EXIT_S)
        self.assertEqual(rc, 1, "exit code on a corrupt log")
        errs = [j for j in json_lines(log) if j.get("level") == "error"]
        hits = [j for j in errs
                if raft_dir in j.get("error", "") and "corrupt" in j.get("error", "")]
        self.assertTrue(hits, "no error line naming %s and the corruption: %s"
                        % (raft_dir, errs))
        j = hits[0]
        self.assertEqual(j.get("msg"), "wardend failed to start", j)
        self.assertIn(seg, j["error"], j)
        self.assertEqual(j.get("code"), "data corruption detected", j)
        self.assertIn("docs/consensus.md", j["error"], j)
        print("  exit %d after %.2fs: %s" % (rc, took, j["error"]), file=sys.stderr)


class SingleNodeTest(wt.TestCase, CorruptLogChecks):
    def test_corrupt_closed_segment_is_a_loud_startup_error(self):
        srv = wt.start_server(name="corrupt")
        ids = []
        with srv.channel("admin") as ch:
            for _ in range(N_DEVICES):
                i = wt.uid("corrupt")
                wt.stub(ch, ct.ENROLL)(ct.enroll_req(i), timeout=ct.RPC_TIMEOUT_S)
                ids.append(i)
        rc, _, killed = srv.stop()
        self.assertEqual((rc, killed), (0, False))
        raft_dir = os.path.join(srv.data_dir, "raft")
        seg = self.corrupt_newest(raft_dir)
        before = dir_digest(raft_dir)

        # Twice: a failed start must not "fix" the log for the next one.
        for attempt in range(2):
            log = os.path.join(srv.tmp, "corrupt-start-%d.log" % attempt)
            srv.logs.append(log)
            cmd = [wt.WARDEND, "--dev", "--data-dir", srv.data_dir,
                   "--listen", "127.0.0.1:%d" % wt.free_port()]
            t0 = time.monotonic()
            with open(log, "wb") as errf:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                     stderr=errf, cwd=srv.tmp)
                try:
                    rc = p.wait(timeout=CORRUPT_EXIT_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=wt.TOOL_TIMEOUT_S)
                    rc = None
            self.assert_loud_failure(rc, time.monotonic() - t0, log, raft_dir, seg)
            self.assertEqual(dir_digest(raft_dir), before,
                             "raft dir changed by a failed start (attempt %d)" % attempt)


class ClusterTest(ct.TestCase, CorruptLogChecks):
    c = None

    @classmethod
    def setUpClass(cls):
        cls.c = ct.Cluster(n=3, name="corrupt",
                           extra_args=["--snapshot-threshold", str(SNAP_THRESHOLD),
                                       "--snapshot-trailing", str(SNAP_TRAILING)])
        try:
            cls.c.start()
            cls.c.wait_leader()
        except BaseException:
            cls.c.dump()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.c is not None:
            cls.c.close()

    def wardenctl(self, *args, exclude=None):
        """wardenctl as admin against the running members (not `exclude`:
        a node that has just joined knows no leader and gives no hint)."""
        eps = []
        for nd in self.c.running():
            if nd is not exclude:
                eps += ["--endpoint", nd.client]
        cmd = [wt.WARDENCTL, *eps, "--dev-certs", self.c.certs, "--role", "admin", *args]
        r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
        out = (r.stdout + r.stderr).decode(errors="replace")
        self.c.history.note("wardenctl %s -> %d: %s" % (" ".join(args), r.returncode, out))
        self.assertEqual(r.returncode, 0, "wardenctl %s: %s" % (" ".join(args), out))
        return out

    def test_follower_corrupt_log_then_documented_recovery(self):
        c = self.c
        leader = c.wait_leader()
        f = next(n for n in c.running() if n.id != leader.id)
        ids = []
        for _ in range(N_DEVICES):
            i = wt.uid("corrupt-c")
            c.call(ct.ENROLL, ct.enroll_req(i, idem=i))
            ids.append(i)
        c.wait_converged()
        self.assertEqual(f.stop(), 0)
        raft_dir = os.path.join(f.data_dir, "raft")
        seg = self.corrupt_newest(raft_dir)
        before = dir_digest(raft_dir)

        t0 = time.monotonic()
        f.start(wait=False)
        try:
            rc = f.proc.wait(timeout=CORRUPT_EXIT_S)
            f._reap(rc)
        except subprocess.TimeoutExpired:
            f.kill9()
            rc = None
        self.assert_loud_failure(rc, time.monotonic() - t0, f.logs[-1], raft_dir, seg)
        self.assertEqual(dir_digest(raft_dir), before, "raft dir changed by a failed start")

        # The documented recovery. 1: remove the member.
        t_rec = time.monotonic()
        self.wardenctl("cluster", "remove", str(f.id))
        st = c.wait_leader().status()
        self.assertNotIn(f.id, [m.id for m in st.members], ct._fmt_status(st))
        # Writes go on with two voters, past a snapshot threshold or three.
        for _ in range(N_AFTER):
            i = wt.uid("corrupt-d")
            c.call(ct.ENROLL, ct.enroll_req(i, idem=i), record=False)
            ids.append(i)
        # 2: move its data dir aside.
        aside = f.data_dir + ".corrupt"
        os.rename(f.data_dir, aside)
        # 3: add it back as a new empty node (same id: its certificate names
        # peer/n<id>): start it with --join, then AddMember on the leader.
        f.start(join=True)
        self.wardenctl("cluster", "add", str(f.id), f.peer, f.client, exclude=f)
        deadline = time.monotonic() + MEMBER_TIMEOUT_S
        while time.monotonic() < deadline:
            st = c.wait_leader().status()
            roles = {m.id: m.role for m in st.members}
            if roles.get(f.id) == cluster_pb2.MEMBER_ROLE_VOTER:
                break
            time.sleep(0.1)
        self.assertEqual(roles.get(f.id), cluster_pb2.MEMBER_ROLE_VOTER,
                         "n%d not promoted: %s" % (f.id, ct._fmt_status(st)))
        stats = c.wait_converged()
        s = stats[f.id]
        self.assertGreater(s.restores, 0, "n%d did not catch up by snapshot install: %s"
                           % (f.id, ct._fmt_status(s)))
        # Every device, identical on every node.
        ref = None
        for nd in c.running():
            got = {d.device_id: (d.created_index, d.key_fingerprint, d.state)
                   for d in nd.list_serializable()}
            missing = [i for i in ids if i not in got]
            self.assertEqual(missing, [], "n%d lacks devices" % nd.id)
            if ref is None:
                ref = got
            self.assertEqual(got, ref, "n%d disagrees" % nd.id)
        # The corrupt copy is still there, untouched, for a post-mortem.
        self.assertEqual(dir_digest(os.path.join(aside, "raft")), before)
        print("  recovery (remove, move aside, join, add, converge) took %.2fs; n%d %s"
              % (time.monotonic() - t_rec, f.id, ct._fmt_status(s)), file=sys.stderr)


def main():
    ct.main()


if __name__ == "__main__":
    main()

"""Issue 9: `wardenctl certs` issues a production PKI that a real 3-node
cluster runs on, and `wardenctl top` shows that cluster.

  (a) `certs init-ca` + `certs issue` for 3 nodes (role peer, n<ID>, SAN IP)
      and an admin; the cluster (cluster.py, each node on its own
      127.0.0.x) elects a leader with those certificates;
      `wardenctl health` and `cluster status` with the issued admin cert
      succeed on every node.
  (b) An admin certificate issued by another CA is refused (the handshake
      fails: UNAVAILABLE), and so is a node-role certificate used as a
      client identity for an admin-only call.
  (c) `wardenctl top --once` prints every node's endpoint and id and names
      the leader the cluster agrees on; `--iterations 2 --interval 250ms`
      refreshes in place (ANSI clear) and shows rates on the second frame;
      `--cluster-json` reads the endpoints from a local-cluster.sh-style
      file. With a follower stopped, its row shows UNAVAILABLE and the
      header 2/3.
  (d) `certs` refuses to overwrite and rejects bad principal names (exit
      codes 73 and 64), without writing anything.
"""

import json
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("WARDEN_CLUSTER_IP_BASE", "60")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402

wt = ct.wt

# Bound on every wardenctl run.
CTL_TIMEOUT_S = 60.0


def ctl(*args, check=True):
    r = subprocess.run([wt.WARDENCTL, *args], capture_output=True,
                       timeout=CTL_TIMEOUT_S)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if check and r.returncode != 0:
        raise AssertionError("wardenctl %s: exit %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


class CertsCluster(ct.Cluster):
    """A cluster whose certificates come from `wardenctl certs`, not
    `wardend gen-certs`. The layout is the same (certs/ca.pem,
    node-<i>.pem, <role>.pem), so cluster.py's Node.start uses them."""

    def _gen_certs(self):
        ctl("certs", "init-ca", "--out", self.certs, "--cn", "ops-cli test CA",
            "--days", "30")
        for i, nd in self.nodes.items():
            ctl("certs", "issue", "--ca-dir", self.certs, "--role", "peer",
                "--name", "n%d" % i, "--ip", nd.ip, "--dns", "localhost",
                "--days", "7", "--out", os.path.join(self.certs, "node-%d" % i))
        ctl("certs", "issue", "--ca-dir", self.certs, "--role", "admin",
            "--name", "ops-admin", "--days", "7",
            "--out", os.path.join(self.certs, "admin"))


class OpsCliTest(ct.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = CertsCluster(3, name="ops-cli")
        cls.c.start()
        cls.leader = cls.c.wait_leader()

    def all_know_leader(self):
        """Until every node names the same leader (a restarted follower
        learns it from the next heartbeat). Bounded."""
        deadline = time.monotonic() + ct.LEADER_TIMEOUT_S
        while time.monotonic() < deadline:
            self.__class__.leader = self.c.wait_leader()
            sts = self.c.statuses(list(self.c.nodes.values()))
            if all(not isinstance(s, Exception) and s.leader_id == self.leader.id
                   for s in sts.values()):
                return
            time.sleep(ct.POLL_S)
        raise AssertionError("nodes do not agree on a leader: %s" % ct._fmt_statuses(sts))

    def tls(self, role="admin", certs=None):
        d = certs or self.c.certs
        return ["--ca", os.path.join(self.c.certs, "ca.pem"),
                "--cert", os.path.join(d, "%s.pem" % role),
                "--key", os.path.join(d, "%s-key.pem" % role)]

    def test_a_issued_certs_run_the_cluster(self):
        self.all_know_leader()
        for k in ("ca-key.pem", "node-1-key.pem", "admin-key.pem"):
            mode = os.stat(os.path.join(self.c.certs, k)).st_mode & 0o777
            self.assertEqual(mode, 0o600, k)
        for nd in self.c.nodes.values():
            # Health follows Raft by a poll (NODE_RAFT_POLL_MS): bounded retry.
            deadline = time.monotonic() + ct.LEADER_TIMEOUT_S
            while True:
                rc, out, err = ctl("--endpoint", nd.client, *self.tls(), "health",
                                   check=False)
                if rc == 0 or time.monotonic() > deadline:
                    break
                time.sleep(ct.POLL_S * 2)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(out.strip(), "SERVING")
            _, out, _ = ctl("--endpoint", nd.client, *self.tls(), "--json",
                            "cluster", "status")
            st = json.loads(out)
            self.assertEqual(st["id"], nd.id)
            self.assertEqual(st["leader_id"], self.leader.id, out)

    def test_b_foreign_ca_refused(self):
        other = os.path.join(self.c.tmp, "other-ca")
        ctl("certs", "init-ca", "--out", other)
        ctl("certs", "issue", "--ca-dir", other, "--role", "admin", "--name",
            "ops-admin", "--out", os.path.join(other, "admin"))
        rc, out, err = ctl("--endpoint", self.leader.client, *self.tls(certs=other),
                           "--timeout", "5s", "health", check=False)
        self.assertEqual(rc, 14, out + err)  # UNAVAILABLE: handshake refused
        self.assertNotIn("SERVING", out)
        # A node certificate is a peer identity: no client method admits it.
        rc, out, err = ctl("--endpoint", self.leader.client, *self.tls(role="node-1"),
                           "cluster", "status", check=False)
        self.assertEqual(rc, 7, out + err)  # PERMISSION_DENIED

    def test_c_top(self):
        self.all_know_leader()
        eps = ",".join(nd.client for nd in self.c.nodes.values())
        _, out, err = ctl("--endpoint", eps, *self.tls(), "top", "--once")
        self.assertNotIn("\x1b[", out)  # --once: a plain frame
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^warden top: 3/3 nodes answering, leader n%d at %s "
                         r"\(term \d+\), every 1s, #1$"
                         % (self.leader.id, re.escape(self.leader.client)))
        self.assertTrue(lines[1].startswith("ID "), out)
        self.assertEqual(len(lines), 5, out)
        for nd in self.c.nodes.values():
            row = [ln for ln in lines[2:] if ln.split()[1] == nd.client]
            self.assertEqual(len(row), 1, out)
            cols = row[0].split()
            self.assertEqual(cols[0], "n%d" % nd.id)
            self.assertEqual(cols[2], "leader" if nd.id == self.leader.id else "follower")
            self.assertEqual(cols[4], "n%d" % self.leader.id)

        # Refresh in place: two frames, each after a clear; the second has rates.
        _, out, _ = ctl("--endpoint", eps, *self.tls(), "top", "--iterations", "2",
                        "--interval", "250ms")
        frames = out.split("\x1b[H\x1b[2J")
        self.assertEqual(len(frames), 3, repr(out))  # "" + 2 frames
        self.assertIn("#2", frames[2].splitlines()[0])
        lead_row = [ln for ln in frames[2].splitlines()
                    if ln.startswith("n%d " % self.leader.id)][0]
        self.assertRegex(lead_row.split()[9], r"^\d+\.\d$")  # PROP/s

        # --cluster-json, the file local-cluster.sh writes.
        cj = os.path.join(self.c.tmp, "cluster.json")
        with open(cj, "w") as f:
            json.dump({"certs": self.c.certs,
                       "nodes": [{"id": nd.id, "client": nd.client, "peer": nd.peer,
                                  "pid": nd.pid, "data_dir": nd.data_dir}
                                 for nd in self.c.nodes.values()]}, f)
        _, out, _ = ctl(*self.tls(), "top", "--once", "--cluster-json", cj)
        self.assertIn("3/3 nodes answering, leader n%d" % self.leader.id, out)

    def test_e_top_with_a_node_down(self):
        nd = [n for n in self.c.nodes.values() if n.id != self.leader.id][0]
        eps = ",".join(n.client for n in self.c.nodes.values())
        nd.stop()
        try:
            _, out, _ = ctl("--endpoint", eps, *self.tls(), "top", "--once")
            self.assertIn("2/3 nodes answering", out)
            row = [ln for ln in out.splitlines() if nd.client in ln][0]
            self.assertIn("UNAVAILABLE", row)
        finally:
            nd.start()
            self.all_know_leader()

    def test_d_certs_refusals(self):
        rc, _, err = ctl("certs", "init-ca", "--out", self.c.certs, check=False)
        self.assertEqual(rc, 73, err)
        self.assertIn("refusing to overwrite", err)
        rc, _, err = ctl("certs", "issue", "--ca-dir", self.c.certs, "--role", "peer",
                         "--name", "node4", "--ip", "127.0.0.1",
                         "--out", os.path.join(self.c.tmp, "n4"), check=False)
        self.assertEqual(rc, 64, err)
        self.assertIn("n<ID>", err)
        self.assertFalse(os.path.exists(os.path.join(self.c.tmp, "n4-key.pem")))
        rc, _, err = ctl("certs", "issue", "--ca-dir", self.c.certs, "--role", "admin",
                         "--name", "ops-admin", "--out",
                         os.path.join(self.c.certs, "admin"), check=False)
        self.assertEqual(rc, 73, err)


if __name__ == "__main__":
    ct.main()

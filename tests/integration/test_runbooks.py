"""Every runbook in docs/ops/ performed step by step on local clusters
(issue 9, "Runbooks in docs/ops/"). Each test names its runbook; the steps
are the runbook's, in its order, with the same commands (wardenctl and the
offline `wardend recover|backup|restore`, openssl for key generation).

  ReplaceDeadNodeTest  replace-dead-node.md
  QuorumLossTest       quorum-loss.md
  BackupRestoreTest    backup-restore.md
  RotateCommandKeyTest rotate-command-key.md
  EmergencyDisableTest emergency-disable.md
  RevokeDeviceTest     revoke-device.md (prints the measured fan-out time)
  ReleaseKeysTest      release-keys.md
  RollbackRolloutTest  rollback-rollout.md

Operator steps are `wardenctl` (run as a subprocess, as the runbooks say);
only the gateway and device side (WatchRevocations streams,
GetDesiredState, signed update reports) is simulated with python grpcio.

Timings of the interesting intervals are printed to stderr.
"""

import hashlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
import runbooks_util as ru  # noqa: E402
from cluster import grpc  # noqa: E402

wt = ct.wt

# Small snapshot settings so catch-up by snapshot install is exercised.
SNAP_ARGS = ["--snapshot-threshold", "16", "--snapshot-trailing", "4"]
# Devices written at each stage: past one snapshot threshold.
N_DEV = 20


class ReplaceDeadNodeTest(ct.TestCase):
    """docs/ops/replace-dead-node.md: kill -9 a follower voter, wipe it,
    wait until `cluster status` names a leader other than it, remove it,
    start a replacement (new id 4) with --join, add it, verify catch-up."""

    def test_replace_dead_node(self):
        c = ct.Cluster(n=3, n_max=4, name="rb-replace", extra_args=SNAP_ARGS)
        try:
            c.start()
            c.wait_leader()
            ids = ru.enroll(c, "rb-rep-a", N_DEV)
            # The runbook replaces a dead node; the dead one here is a
            # follower (the highest id that is not the leader), so that
            # `cluster remove` does not race an election: wardenctl does
            # not resend an unkeyed write.
            leader = c.wait_leader()
            dead = max((nd for nd in c.running() if nd is not leader), key=lambda nd: nd.id)
            survivors = [nd for nd in c.running() if nd is not dead]
            # 1. the node dies (kill -9) and its disk is lost.
            dead.kill9()
            shutil.rmtree(dead.data_dir)
            t0 = time.monotonic()
            # 2. the runbook's step: `cluster status` names a leader other
            # than the dead node (needed when the dead node was the leader;
            # here it confirms the survivors still have one). Bounded.
            ld = c.wait_leader(timeout=ct.LEADER_TIMEOUT_S, exclude=(dead.id,))
            rc, out, err = ru.wardenctl(c, "cluster", "status")
            self.assertNotEqual(ld.id, dead.id)
            # 3. remove it (sent to the survivors).
            ru.wardenctl(c, "cluster", "remove", str(dead.id))
            st = c.wait_leader().status()
            self.assertNotIn(dead.id, [m.id for m in st.members], ct._fmt_status(st))
            ids += ru.enroll(c, "rb-rep-b", N_DEV)
            # 4. start the replacement with --join, 5. add it.
            new = c.node(4)
            new.start(join=True)
            ru.add_voter(c, new, via=survivors)
            # 6. verify catch-up.
            stats = c.wait_converged()
            for nd in c.running():
                missing = set(ids) - ru.device_ids(nd)
                self.assertEqual(missing, set(), "n%d lacks devices" % nd.id)
            print("\n  replace-dead-node: killed follower n%d; remove..converged %.2fs; "
                  "n4 restores=%d; admission resends %s"
                  % (dead.id, time.monotonic() - t0, stats[4].restores,
                     ru.admission_retries), file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


class QuorumLossTest(ct.TestCase):
    """docs/ops/quorum-loss.md: 3 voters, 2 die; the survivor is stopped,
    `wardend recover` forces a 1-member configuration, it starts and takes
    writes; 2 fresh nodes are added back."""

    def test_quorum_loss(self):
        c = ct.Cluster(n=3, name="rb-quorum", extra_args=SNAP_ARGS)
        try:
            c.start()
            c.wait_leader()
            ids = ru.enroll(c, "rb-q-a", N_DEV)
            c.wait_converged()
            c.node(2).kill9()
            c.node(3).kill9()
            s = c.node(1)
            # Quorum is gone: writes fail.
            with self.assertRaises(grpc.RpcError):
                c.call(ct.ENROLL, ct.enroll_req(wt.uid("rb-q-x")), node=s,
                       deadline_s=3, timeout=2, record=False)
            t0 = time.monotonic()
            # 1. stop the survivor.
            self.assertEqual(s.stop(), 0)
            # 2. recover it to a one-member configuration.
            rc, out, err = ru.wardend_offline(c, "recover", "--data-dir", s.data_dir,
                                              "--node-id", "1", "--peers", ru.peers_of([s]))
            self.assertIn("RECOVER DONE", out + err)
            # A second run against a running node is refused.
            # 3. start it with its usual command line.
            s.start()
            lead = c.wait_leader()
            self.assertEqual(lead.id, 1)
            st = s.status()
            self.assertEqual([m.id for m in st.members], [1], ct._fmt_status(st))
            rc, out, err = ru.wardend_offline(c, "recover", "--data-dir", s.data_dir,
                                              "--node-id", "1", "--peers", ru.peers_of([s]),
                                              check=False)
            self.assertEqual(rc, 2, "recover on a running node: %s%s" % (out, err))
            self.assertIn("in use", out + err)
            # 4. writes work.
            ids += ru.enroll(c, "rb-q-b", N_DEV, node=s)
            t_writes = time.monotonic() - t0
            # 5. add two fresh nodes (old data dirs wiped).
            for i in (2, 3):
                nd = c.node(i)
                shutil.rmtree(nd.data_dir)
                nd.start(join=True)
                ru.add_voter(c, nd, via=[s])
            c.wait_converged()
            for nd in c.running():
                self.assertEqual(set(ids) - ru.device_ids(nd), set(), "n%d lacks devices" % nd.id)
            print("\n  quorum-loss: stop..writes %.2fs, ..3 voters converged %.2fs"
                  % (t_writes, time.monotonic() - t0), file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


class BackupRestoreTest(ct.TestCase):
    """docs/ops/backup-restore.md: back up a running node, restore into a
    fresh single-node cluster, verify data and the audit chain against the
    manifest's ledger head; new writes apply."""

    def test_backup_restore(self):
        c = ct.Cluster(n=1, n_max=2, name="rb-backup", extra_args=SNAP_ARGS)
        try:
            c.start()
            c.wait_leader()
            src = c.node(1)
            before = ru.enroll(c, "rb-b-a", N_DEV, node=src)
            # A backup copies the node's last LMDB commit, which may trail
            # its answers by up to the apply batch's commit interval
            # (docs/consensus.md, "Batched apply"); any read through the
            # node commits first, so afterwards the backup holds them all.
            self.assertEqual(set(before) - ru.device_ids(src), set())
            bdir = os.path.join(c.tmp, "backup-1")
            # 1. backup while the node runs.
            ru.wardend_offline(c, "backup", "--data-dir", src.data_dir, "--out", bdir)
            man = ru.read_json(os.path.join(bdir, "MANIFEST.json"))
            self.assertGreater(man["applied_index"], N_DEV)
            self.assertGreater(man["audit_head_seq"], 0)
            after = ru.enroll(c, "rb-b-b", 3, node=src)  # not in the backup
            # 2. restore into a fresh data dir as a new single-node cluster.
            dst = c.node(2)
            rc, out, err = ru.wardend_offline(
                c, "restore", "--backup", bdir, "--data-dir", dst.data_dir,
                "--node-id", "2", "--peers", ru.peers_of([dst]))
            self.assertIn("RESTORE DONE", out + err)
            # Restoring over an existing data dir is refused.
            rc, out, err = ru.wardend_offline(
                c, "restore", "--backup", bdir, "--data-dir", dst.data_dir,
                "--node-id", "2", "--peers", ru.peers_of([dst]), check=False)
            self.assertEqual(rc, 2, out + err)
            # 3. start it (its own one-member cluster; the source keeps running).
            dst.start()
            st = dst.status()
            deadline = time.monotonic() + ct.LEADER_TIMEOUT_S
            while st.state != "leader" and time.monotonic() < deadline:
                time.sleep(0.1)
                st = dst.status()
            self.assertEqual(st.state, "leader", ct._fmt_status(st))
            self.assertEqual([m.id for m in st.members], [2], ct._fmt_status(st))
            self.assertGreaterEqual(st.fsm_applied_index, man["applied_index"])
            # 4. data: everything before the backup, nothing after it.
            got = ru.device_ids(dst)
            self.assertEqual(set(before) - got, set())
            self.assertEqual(set(after) & got, set())
            # 5. new writes apply and are visible (the log continues after
            # the backup's applied index, so the fsm does not skip them).
            new = ru.enroll(c, "rb-b-c", 3, node=dst)
            self.assertEqual(set(new) - ru.device_ids(dst), set())
            # 6. audit chain: export up to the manifest head, verify, compare.
            exp = os.path.join(c.tmp, "audit-restored.jsonl")
            ru.wardenctl(c, "audit", "export", "--to", str(man["audit_head_seq"]), exp,
                         endpoints=[dst.client])
            rc, out, err = ru.wardenctl(c, "--json", "audit", "verify", exp,
                                        endpoints=[dst.client])
            import json
            v = json.loads(out)
            self.assertEqual(v["result"], "intact", out)
            self.assertEqual(v["last_seq"], man["audit_head_seq"], out)
            self.assertEqual(v["last_hash"], man["audit_head_hash"], out)
            print("\n  backup-restore: applied_index=%d head_seq=%d verified; restored "
                  "node applied %d" % (man["applied_index"], man["audit_head_seq"],
                                       dst.status().fsm_applied_index), file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


class RotateCommandKeyTest(ct.TestCase):
    """docs/ops/rotate-command-key.md: Control/RotateCommandKey via
    `wardenctl control key rotate`; envelopes signed before still verify
    with the old key id's public key, new ones carry and verify with the new
    key (and not with the old one)."""

    def issue(self, c, dev):
        rc, out, err = ru.wardenctl(c, "--json", "control", "issue", dev, "--payload-hex", "00")
        import json
        return json.loads(out)

    def pubkey(self, c, kid):
        rc, out, err = ru.wardenctl(c, "--json", "control", "key", "get", "--key-id", kid)
        import json
        return json.loads(out)["public_key"]

    def verify(self, c, env, key_hex, dev):
        cmd = [wt.WARDENCTL, "verify-command", "--envelope-hex", env["envelope"],
               "--signature-hex", env["signature"], "--pubkey-hex", key_hex,
               "--device", dev, "--key-epoch", str(env["key_epoch"]), "--last-seq", "0"]
        r = ct.subprocess.run(cmd, capture_output=True, timeout=ru.CLI_TIMEOUT_S)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    def test_rotate_command_key(self):
        c = ct.Cluster(n=1, name="rb-ckey")
        try:
            c.start()
            c.wait_leader()
            dev = ru.enroll(c, "rb-ck", 1)[0]
            ru.wardenctl(c, "device", "state", dev, "ACTIVE", "--reason", "runbook")
            old = self.issue(c, dev)
            kid_old = old["key_id"]
            kid_new = kid_old + "-r2"
            ru.wardenctl(c, "control", "key", "rotate", "--key-id", kid_new)
            new = self.issue(c, dev)
            self.assertEqual(new["key_id"], kid_new)
            pk_old, pk_new = self.pubkey(c, kid_old), self.pubkey(c, kid_new)
            self.assertNotEqual(pk_old, pk_new)
            rc, out = self.verify(c, old, pk_old, dev)
            self.assertEqual(rc, 0, "old envelope with old key: " + out)
            rc, out = self.verify(c, new, pk_new, dev)
            self.assertEqual(rc, 0, "new envelope with new key: " + out)
            rc, out = self.verify(c, new, pk_old, dev)
            self.assertNotEqual(rc, 0, "new envelope verified with the OLD key: " + out)
            # Key ids are never reused.
            rc, out, err = ru.wardenctl(c, "control", "key", "rotate", "--key-id", kid_old,
                                        check=False)
            self.assertNotEqual(rc, 0, out + err)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


ALLOW, DENY = "ACCESS_DECISION_ALLOW", "ACCESS_DECISION_DENY"


def _grant(c, dev):
    """An ACTIVE diagnostics grant on dev for the operator: `access request`
    (operator) then `access approve` (admin; the policy asks 1 approval)."""
    r = ru.wjson(c, "access", "request", "--device", dev, "--purpose", "diagnostics",
                 "--reason", "runbook", "--protocol", "ssh", "--port", "22",
                 "--duration", "30m", "--max-sessions", "5", role="operator")
    a = ru.wjson(c, "access", "approve", r["request"]["request_id"])
    return a["grant"]["grant_id"]


class EmergencyDisableTest(ct.TestCase):
    """docs/ops/emergency-disable.md: lock a device, a gateway, everything;
    CheckAccess (as the gateway) denies with the lock's reason, the grants
    it covers are revoked, unlock restores, every step is in the ledger."""

    rev = 0

    def check(self, c, dev):
        r = ru.wjson(c, "access", "check", "--principal", ru.OPERATOR, "--device", dev,
                     "--protocol", "ssh", "--port", "22", "--revision", str(self.rev),
                     role="gateway")
        self.rev = max(self.rev, r["revision"])
        return r

    def assertDeny(self, c, dev, reason, lock_id):
        r = self.check(c, dev)
        self.assertEqual((r["decision"], r["reason"], r["lock_id"]),
                         (DENY, "ACCESS_DENY_REASON_" + reason, lock_id), r)

    def assertAllow(self, c, dev):
        r = self.check(c, dev)
        self.assertEqual(r["decision"], ALLOW, r)

    def grant_state(self, c, dev, gid):
        gs = [g for g in ru.wjson(c, "access", "grants", "--device", dev)["grants"]
              if g["grant_id"] == gid]
        self.assertEqual(len(gs), 1, gs)
        return gs[0]

    def test_emergency_disable(self):
        c = ct.Cluster(n=3, name="rb-disable")
        try:
            c.start()
            c.wait_leader()
            t0 = time.monotonic()
            # Setup: two devices behind the gateway, a grant on each.
            da, db = ru.enroll(c, "rb-ed", 2, gateway=ru.GATEWAY)
            ru.activate(c, [da, db])
            ru.wardenctl(c, "access", "policy", "set", "--purpose", "diagnostics",
                         "--approvals", "1")
            ga, gb = _grant(c, da), _grant(c, db)
            self.assertAllow(c, da)
            self.assertAllow(c, db)
            reasons = {}
            # 1. one device.
            lk = ru.wjson(c, "access", "lock", "--device", da, "--reason", "incident 42: plc-7")
            self.assertEqual((lk["kind"], lk["value"], lk["revoked_now"]),
                             ("LOCK_TARGET_KIND_DEVICE", da, 1), lk)
            reasons[lk["lock_id"]] = "incident 42: plc-7"
            self.assertDeny(c, da, "DEVICE_LOCKED", lk["lock_id"])
            self.assertAllow(c, db)  # other devices unaffected
            g = self.grant_state(c, da, ga)
            self.assertEqual(g["state"], "ACCESS_GRANT_STATE_REVOKED", g)
            self.assertIn(lk["lock_id"], g["revoke_reason"])
            u = ru.wjson(c, "access", "unlock", lk["lock_id"], "--reason", "resolved")
            self.assertTrue(u.get("lock", u)["unlocked"], u)
            # The revoked grant stays revoked; a new one works.
            r = self.check(c, da)
            self.assertEqual(r["decision"], DENY, r)
            ga = _grant(c, da)
            self.assertAllow(c, da)
            # 2. one gateway: every device behind it.
            lk = ru.wjson(c, "access", "lock", "--gateway", ru.GATEWAY,
                          "--reason", "incident 43: gateway compromised")
            reasons[lk["lock_id"]] = "incident 43: gateway compromised"
            self.assertEqual(lk["revoked_now"], 2, lk)
            for d, gid in ((da, ga), (db, gb)):
                self.assertDeny(c, d, "GATEWAY_LOCKED", lk["lock_id"])
                self.assertEqual(self.grant_state(c, d, gid)["state"],
                                 "ACCESS_GRANT_STATE_REVOKED")
            ru.wardenctl(c, "access", "unlock", lk["lock_id"], "--reason", "resolved")
            ga, gb = _grant(c, da), _grant(c, db)
            self.assertAllow(c, da)
            self.assertAllow(c, db)
            # 3. everything.
            lk = ru.wjson(c, "access", "lock", "--all", "--reason", "incident 44: stop everything")
            reasons[lk["lock_id"]] = "incident 44: stop everything"
            self.assertEqual(lk["revoked_now"], 2, lk)
            for d, gid in ((da, ga), (db, gb)):
                self.assertDeny(c, d, "ALL_LOCKED", lk["lock_id"])
                self.assertEqual(self.grant_state(c, d, gid)["state"],
                                 "ACCESS_GRANT_STATE_REVOKED")
            # A new grant does not get through an ALL lock either.
            _grant(c, da)
            self.assertDeny(c, da, "ALL_LOCKED", lk["lock_id"])
            ru.wardenctl(c, "access", "unlock", lk["lock_id"], "--reason", "resolved")
            self.assertAllow(c, da)   # the grant made under the lock
            _grant(c, db)
            self.assertAllow(c, db)
            # 4. audit: export, verify, find every lock, unlock and denial.
            es = ru.audit_export_verify(c, os.path.join(c.tmp, "audit-disable.jsonl"))
            for lid, why in reasons.items():
                self.assertEqual(len(ru.entries(es, "ACCESS_LOCK", target=lid, detail=why)), 1, lid)
                self.assertEqual(len(ru.entries(es, "ACCESS_UNLOCK", target=lid)), 1, lid)
            for reason in ("DEVICE_LOCKED", "GATEWAY_LOCKED", "ALL_LOCKED"):
                self.assertTrue(ru.entries(es, "ACCESS_CHECK", "AUDIT_OUTCOME_DENIED",
                                           detail="ACCESS_DENY_REASON_" + reason), reason)
            print("\n  emergency-disable: %d locks and unlocks, %d ledger entries "
                  "verified in %.2fs" % (len(reasons), len(es), time.monotonic() - t0),
                  file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


# revoke-device: gateways (the cluster's own `gateway` plus certificates
# issued with `wardenctl certs issue`), watchers per gateway, spread over
# the nodes: N_GATEWAYS * WATCHERS_PER_GW = 20 streams.
N_GATEWAYS = 5
WATCHERS_PER_GW = 4


class RevokeDeviceTest(ct.TestCase):
    """docs/ops/revoke-device.md: `wardenctl device state ID revoked`; every
    WatchRevocations stream of the device's gateway (20 streams over 5
    gateways and 3 nodes) carries the event; time from the ack to the last
    watcher is printed; CheckAccess then denies DEVICE_NOT_ACTIVE."""

    def test_revoke_device(self):
        c = ct.Cluster(n=3, name="rb-revoke")
        watchers = []
        try:
            c.start()
            c.wait_leader()
            nodes = c.running()
            # Gateway certificates from the cluster CA (`certs issue`).
            gws = [ru.GATEWAY] + ["gw-%d" % i for i in range(2, N_GATEWAYS + 1)]
            for g in gws[1:]:
                ru.wardenctl_offline("certs", "issue", "--ca-dir", c.certs, "--role", "gateway",
                                     "--name", g, "--out", os.path.join(c.certs, g))
            # One active device per gateway, with a grant.
            ru.wardenctl(c, "access", "policy", "set", "--purpose", "diagnostics",
                         "--approvals", "1")
            dev = {}
            for g in gws:
                dev[g] = ru.enroll(c, "rb-rv", 1, gateway=g)[0]
                ru.activate(c, [dev[g]])
                _grant(c, dev[g])
            # 20 gateway streams (each with its own certificate's view) and
            # one operator stream (sees every gateway's events).
            for i in range(N_GATEWAYS * WATCHERS_PER_GW):
                g = gws[i % N_GATEWAYS]
                nd = nodes[i % len(nodes)]
                watchers.append(ru.Watch(c.channel(nd, g), 0, (g, nd.id)))
            admin = ru.Watch(c.channel(nodes[0], "admin"), 0, ("admin", nodes[0].id))
            for w in watchers + [admin]:   # open: a progress message arrived
                self.assertTrue(w.wait(lambda w=w: len(w.msgs) > 0), w.label)
            # Revoke each gateway's device in turn; time ack -> last watcher
            # of that gateway.
            by_ack, by_start, per_role = [], [], {}
            for g in gws:
                d = dev[g]
                t_start = time.monotonic()
                ru.wardenctl(c, "device", "state", d, "revoked", "--reason", "key leaked",
                             role="operator")
                t_ack = time.monotonic()

                def is_rev(e, d=d):
                    return e.kind == ru.acc.REVOCATION_KIND_DEVICE_REVOKED and d in e.device_ids
                mine = [w for w in watchers if w.label[0] == g]
                ts = [w.wait_event(is_rev) for w in mine]
                self.assertNotIn(None, ts, "a watcher of %s never saw %s" % (g, d))
                by_ack.append((max(ts) - t_ack) * 1000)
                lead = c.wait_leader().id
                for w, t in zip(mine, ts):
                    per_role.setdefault("leader" if w.label[1] == lead else "follower",
                                        []).append((t - t_ack) * 1000)
                by_start.append((max(ts) - t_start) * 1000)
            self.assertIsNotNone(admin.wait_event(
                lambda e: e.kind == ru.acc.REVOCATION_KIND_DEVICE_REVOKED
                and dev[gws[-1]] in e.device_ids))
            # Blast radius: a gateway's streams carry its own devices only.
            for w in watchers:
                seen = {x for _, m in w.msgs for e in m.events for x in e.device_ids}
                self.assertEqual(seen, {dev[w.label[0]]}, w.label)
            # CheckAccess as the device's gateway: DENY DEVICE_NOT_ACTIVE.
            for g in (gws[0], gws[1]):
                r = ru.wjson(c, "access", "check", "--principal", ru.OPERATOR, "--device", dev[g],
                             "--protocol", "ssh", "--port", "22", "--revision", "0", role=g)
                self.assertEqual((r["decision"], r["reason"]),
                                 (DENY, "ACCESS_DENY_REASON_DEVICE_NOT_ACTIVE"), r)
            # Another gateway is refused outright (not its device): exit 7.
            rc, out, err = ru.wardenctl(c, "access", "check", "--principal", ru.OPERATOR,
                                        "--device", dev[gws[0]], "--protocol", "ssh",
                                        "--port", "22", "--revision", "0", role=gws[1],
                                        check=False)
            self.assertEqual(rc, 7, out + err)
            d0 = ru.wjson(c, "device", "get", dev[gws[0]])
            self.assertIn("REVOKED", json.dumps(d0))
            es = ru.audit_export_verify(c, os.path.join(c.tmp, "audit-revoke.jsonl"))
            for g in gws:
                self.assertEqual(len(ru.entries(es, "STATE_CHANGE", target=dev[g],
                                                detail="-> REVOKED: key leaked")), 1)
            print("\n  revoke-device: %d watchers (%d gateways x %d, 3 nodes); ack -> last "
                  "watcher of the device's gateway: max %.1f ms, median %.1f ms over %d "
                  "revocations (command start -> last: max %.1f ms)"
                  % (len(watchers), N_GATEWAYS, WATCHERS_PER_GW, max(by_ack),
                     sorted(by_ack)[len(by_ack) // 2], len(by_ack), max(by_start)),
                  file=sys.stderr)
            print("  revoke-device: ack -> event, max by node role: %s"
                  % ", ".join("%s %.1f ms" % (k, max(v)) for k, v in sorted(per_role.items())),
                  file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            for w in watchers:
                w.close()
            c.close()


MODEL = "plc-9000"   # cluster.enroll_req's hardware model


def _manifest(c, d, version, counter, artifact):
    """`wardenctl rollout release manifest ... > FILE` (offline)."""
    path = os.path.join(d, "m-%d.bin" % counter)
    ru.wardenctl_offline("rollout", "release", "manifest", "--version", version,
                         "--counter", str(counter), "--artifact-sha256",
                         hashlib.sha256(artifact).hexdigest(), "--artifact-size",
                         str(len(artifact)), "--model", MODEL, stdout_path=path)
    return path


def _release(c, mpath, key_id, priv, check=True):
    """`wardenctl --role rollout rollout release create ...`: (rc, release or
    stderr)."""
    rc, out, err = ru.wardenctl(c, "--json", "rollout", "release", "create", "--manifest-file",
                                mpath, "--key-id", key_id, "--private-key-file", priv,
                                role="rollout", check=check)
    if rc != 0:
        return rc, err
    j = json.loads(out)
    return rc, j.get("release", j)


class ReleaseKeysTest(ct.TestCase):
    """docs/ops/release-keys.md: register the new release key, release with
    it, revoke the old one; the old key's signatures are refused from then
    on, releases it made stay; every step is in the ledger."""

    def test_release_keys(self):
        c = ct.Cluster(n=3, name="rb-relkeys")
        try:
            c.start()
            c.wait_leader()
            t0 = time.monotonic()
            kd = os.path.join(c.tmp, "keys")
            os.makedirs(kd)
            # Before: rel-1 in use, one release signed with it.
            k1, p1 = ru.openssl_ed25519(kd, "rel-1")
            ru.wardenctl(c, "rollout", "key", "register", "rel-1", "--public-key-file", p1)
            rc, r10 = _release(c, _manifest(c, kd, "1.0.0", 10, b"fw-1.0.0"), "rel-1", k1)
            self.assertEqual((r10["key_id"], r10["release_counter"]), ("rel-1", 10), r10)
            # 1. new key pair, offline; 2. register it (admin).
            k2, p2 = ru.openssl_ed25519(kd, "rel-2")
            ru.wardenctl(c, "rollout", "key", "register", "rel-2", "--public-key-file", p2)
            # Only an admin registers keys.
            k3, p3 = ru.openssl_ed25519(kd, "rel-x")
            rc, out, err = ru.wardenctl(c, "rollout", "key", "register", "rel-x",
                                        "--public-key-file", p3, role="rollout", check=False)
            self.assertEqual(rc, 7, out + err)
            # 3. sign the next release with the new key.
            rc, r20 = _release(c, _manifest(c, kd, "1.1.0", 20, b"fw-1.1.0"), "rel-2", k2)
            self.assertEqual((r20["key_id"], r20["release_counter"]), ("rel-2", 20), r20)
            # A signature by the wrong key under rel-2's id does not verify.
            m30 = _manifest(c, kd, "1.2.0", 30, b"fw-1.2.0")
            rc, err = _release(c, m30, "rel-2", k1, check=False)
            self.assertEqual(rc, 7, err)
            self.assertIn("does not verify", err)
            # 4. revoke the old key.
            rv = ru.wjson(c, "rollout", "key", "revoke", "rel-1", "--reason", "rotated")
            self.assertTrue(rv.get("key", rv)["revoked"], rv)
            # 5. a release signed by the revoked key is refused (exit 9).
            rc, err = _release(c, m30, "rel-1", k1, check=False)
            self.assertEqual(rc, 9, err)
            self.assertIn("revoked", err)
            # ... the new key keeps working, and the old key's release stays.
            rc, r30 = _release(c, m30, "rel-2", k2)
            self.assertEqual(r30["key_id"], "rel-2")
            got = ru.wjson(c, "rollout", "release", "get", str(r10["release_id"]))
            self.assertEqual(got.get("release", got)["key_id"], "rel-1", got)
            # Revoking is final: no re-registering the id with another key.
            rc, out, err = ru.wardenctl(c, "rollout", "key", "register", "rel-1",
                                        "--public-key-file", p2, check=False)
            self.assertNotEqual(rc, 0, out + err)
            # 6. audit.
            es = ru.audit_export_verify(c, os.path.join(c.tmp, "audit-relkeys.jsonl"))
            for kid in ("rel-1", "rel-2"):
                self.assertEqual(len(ru.entries(es, "RELEASE_KEY_REGISTER", target=kid)), 1,
                                 [e for e in es if "KEY" in e["action"]])
            self.assertEqual(len(ru.entries(es, "RELEASE_KEY_REVOKE", target="rel-1",
                                            detail="rotated")), 1)
            self.assertEqual(len(ru.entries(es, "RELEASE_CREATE")), 3,
                             [e for e in es if "RELEASE" in e["action"]])
            refused = [e for e in es if e["action"] == "AUDIT_ACTION_RELEASE_CREATE"
                       and e["outcome"] != "AUDIT_OUTCOME_OK"]
            self.assertEqual(len(ru.entries(es, "RELEASE_CREATE", "AUDIT_OUTCOME_DENIED",
                                            detail="does not verify with release key rel-2")), 1)
            self.assertEqual(len(ru.entries(es, "RELEASE_CREATE", "AUDIT_OUTCOME_REJECTED",
                                            detail="release key rel-1 is revoked")), 1)
            print("\n  release-keys: rotated in %.2fs; %d ledger entries verified; refused "
                  "creates in the ledger: %s" % (time.monotonic() - t0, len(es),
                                                 [(e["outcome"], e["detail"]) for e in refused]),
                  file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


# rollback-rollout: the fleet, and how the bad release goes on it.
FLEET = 20
N_OK, N_FAILED = 12, 4      # the rest (4) never report
RS = "/warden.v1.Rollouts/"


class RollbackRolloutTest(ct.TestCase):
    """docs/ops/rollback-rollout.md: a 20-device fleet on release 10; a
    rollout of release 11 where 4 devices report FAILED; `wardenctl rollout
    abort ID --reason .. --rollback` creates a rollback release (counter 12,
    release 10's artifact) and its rollout; the devices that installed 11 get
    it as desired state, nobody else; anti-downgrade holds; audit verifies."""

    def desired(self, c, d):
        return ru.rpc(c, RS + "GetDesiredState", ru.ro.GetDesiredStateRequest(
            device_id=d.id, idempotency_key=wt.uid("ds")), ru.ro.GetDesiredStateResponse)

    def report(self, c, d, rid, counter, phase):
        ctr = d.next_counter()
        req = ru.ro.ReportUpdateStatusRequest(
            device_id=d.id, key_epoch=1, counter=ctr, rollout_id=rid, release_counter=counter,
            phase=phase, detail="runbook")
        req.signature = d.key.sign(ru.tr.report_message(d.id, 1, ctr, rid, counter, phase,
                                                        "runbook"))
        return ru.rpc(c, RS + "ReportUpdateStatus", req,
                      ru.ro.ReportUpdateStatusResponse).result

    def rollout(self, c, release_id, name, *extra):
        j = ru.wjson(c, "rollout", "create", "--release", str(release_id), "--stage", "all=100%",
                     "--manual", "--name", name, *extra, role="rollout")
        rid = j.get("rollout", j)["rollout_id"]
        ru.wardenctl(c, "rollout", "start", str(rid), "--reason", "runbook", role="rollout")
        return rid

    def test_rollback_rollout(self):
        c = ct.Cluster(n=3, name="rb-rollback")
        PH = ru.ro.UpdatePhase
        try:
            c.start()
            c.wait_leader()
            t0 = time.monotonic()
            kd = os.path.join(c.tmp, "keys")
            os.makedirs(kd)
            k1, p1 = ru.openssl_ed25519(kd, "rel-1")
            ru.wardenctl(c, "rollout", "key", "register", "rel-1", "--public-key-file", p1)
            # The fleet: 20 devices with their own Ed25519 keys, behind `gateway`.
            fleet = []
            for i in range(FLEET):
                d = ru.tr.Device(wt.uid("rb-fl"), ru.tr.EdKey(kd), {})
                c.call(ct.ENROLL, ct.inv_pb2.EnrollDeviceRequest(
                    device_id=d.id, key_algorithm=ct.inv_pb2.KEY_ALGORITHM_ED25519,
                    public_key=d.key.public, attestation_digest=wt.digest32(d.id),
                    hardware_model=MODEL, firmware_version="1.0.0", gateway_id=ru.GATEWAY,
                    idempotency_key=d.id), record=False)
                fleet.append(d)
            ru.activate(c, [d.id for d in fleet])
            # Release 10 everywhere (the good one).
            old_art = b"fw-1.0.0 image"
            _, r10 = _release(c, _manifest(c, kd, "1.0.0", 10, old_art), "rel-1", k1)
            base = self.rollout(c, r10["release_id"], "base")
            for d in fleet:
                r = self.desired(c, d)
                self.assertEqual(r.release.release_id, r10["release_id"])
                self.assertEqual(self.report(c, d, base, 10, PH.UPDATE_PHASE_SUCCEEDED),
                                 ru.ro.REPORT_RESULT_ACCEPTED)
            ru.wardenctl(c, "rollout", "advance", str(base), "--force", "--reason", "all on 10")
            # Release 11 (bad): every device is assigned; 12 install it, 4
            # report FAILED, 4 say nothing.
            _, r11 = _release(c, _manifest(c, kd, "1.1.0", 11, b"fw-1.1.0 image"), "rel-1", k1)
            bad = self.rollout(c, r11["release_id"], "bad", "--min-reported", "1000",
                               "--failure-ratio", "100%")
            moved, failed = fleet[:N_OK], fleet[N_OK:N_OK + N_FAILED]
            for d in fleet:
                r = self.desired(c, d)
                self.assertEqual((r.has_target, r.release.release_counter, r.installed_counter),
                                 (True, 11, 10), d.id)
            for d in moved:
                self.assertEqual(self.report(c, d, bad, 11, PH.UPDATE_PHASE_SUCCEEDED),
                                 ru.ro.REPORT_RESULT_ACCEPTED)
            for d in failed:
                self.assertEqual(self.report(c, d, bad, 11, PH.UPDATE_PHASE_FAILED),
                                 ru.ro.REPORT_RESULT_ACCEPTED)
            t_inc = time.monotonic()
            # 1. where it is.
            rc, status_txt, _ = ru.wardenctl(c, "rollout", "status", str(bad), role="operator")
            st = ru.wjson(c, "rollout", "status", str(bad), role="operator")
            self.assertEqual(st["rollout"]["state"], "ROLLOUT_STATE_RUNNING", st)
            # 2. the rollback manifest: a HIGHER counter, the OLD artifact.
            mrb = _manifest(c, kd, "1.0.0-rb1", 12, old_art)
            # 3. abort with rollback (admin).
            ab = ru.wjson(c, "rollout", "abort", str(bad), "--reason", "crash loop on 1.1.0",
                          "--rollback", "--manifest-file", mrb, "--key-id", "rel-1",
                          "--private-key-file", k1)
            t_rb = time.monotonic()
            self.assertEqual(ab["rollout"]["state"], "ROLLOUT_STATE_ABORTED", ab)
            rb_rel, rb_ro = ab["rollback_release_id"], ab["rollback_rollout_id"]
            self.assertNotEqual(rb_rel, 0, ab)
            g = ru.wjson(c, "rollout", "release", "get", str(rb_rel))
            g = g.get("release", g)
            self.assertEqual((g["release_counter"], g["rollback_of"], g["artifact_sha256"]),
                             (12, r11["release_id"], hashlib.sha256(old_art).hexdigest()), g)
            st = ru.wjson(c, "rollout", "status", str(rb_ro), role="operator")
            self.assertEqual((st["rollout"]["state"], st["rollout"]["only_installed_release"]),
                             ("ROLLOUT_STATE_RUNNING", r11["release_id"]), st)
            # 4. the devices that moved get the rollback release; no one else.
            for d in fleet:
                r = self.desired(c, d)
                if d in moved:
                    self.assertEqual((r.has_target, r.release.release_id, r.installed_counter),
                                     (True, rb_rel, 11), d.id)
                    self.assertEqual(self.report(c, d, rb_ro, 12, PH.UPDATE_PHASE_SUCCEEDED),
                                     ru.ro.REPORT_RESULT_ACCEPTED)
                else:
                    self.assertFalse(r.has_target, (d.id, r))
                    self.assertEqual(r.installed_counter, 10, d.id)
            t_back = time.monotonic()
            # Anti-downgrade: a late report for 11 is refused; no release at
            # or below 12 can be created; desired never goes down.
            v = self.report(c, moved[0], bad, 11, PH.UPDATE_PHASE_SUCCEEDED)
            self.assertIn(v, (ru.ro.REPORT_RESULT_WRONG_RELEASE, ru.ro.REPORT_RESULT_DUPLICATE))
            v = self.report(c, moved[0], rb_ro, 11, PH.UPDATE_PHASE_SUCCEEDED)
            self.assertEqual(v, ru.ro.REPORT_RESULT_WRONG_RELEASE)
            for ctr in (11, 12):
                rc, err = _release(c, _manifest(c, kd, "9.9.%d" % ctr, ctr, b"x"), "rel-1", k1,
                                   check=False)
                self.assertEqual(rc, 9, err)
            again = self.rollout(c, r11["release_id"], "bad-again")
            for d in moved:
                r = self.desired(c, d)
                self.assertFalse(r.has_target, (d.id, r))
                self.assertEqual(r.installed_counter, 12)
            ru.wardenctl(c, "rollout", "abort", str(again), "--reason", "downgrade check done",
                         role="operator")
            # 5. finish the rollback rollout by hand.
            ru.wardenctl(c, "rollout", "advance", str(rb_ro), "--force", "--reason",
                         "rolled back")
            st = ru.wjson(c, "rollout", "status", str(rb_ro), role="operator")
            self.assertEqual(st["rollout"]["state"], "ROLLOUT_STATE_COMPLETED", st)
            # 6. audit.
            es = ru.audit_export_verify(c, os.path.join(c.tmp, "audit-rollback.jsonl"))
            self.assertEqual(len(ru.entries(es, "ROLLOUT_TRANSITION", target="rollout/%d" % bad,
                                            detail="crash loop on 1.1.0")), 1)
            self.assertEqual(len(ru.entries(es, "RELEASE_ROLLBACK")), 1,
                             [e for e in es if "RELEASE" in e["action"]])
            print("\n  rollback-rollout: fleet %d (%d installed 11, %d FAILED, %d silent); "
                  "abort --rollback %.0f ms; moved devices back on the old artifact %.2fs "
                  "after the abort; setup..done %.2fs, %d ledger entries verified"
                  % (FLEET, N_OK, N_FAILED, FLEET - N_OK - N_FAILED, (t_rb - t_inc) * 1000,
                     t_back - t_rb, time.monotonic() - t0, len(es)), file=sys.stderr)
            print(status_txt, file=sys.stderr)
        except BaseException:
            c.dump()
            raise
        finally:
            c.close()


def main():
    ct.main()


if __name__ == "__main__":
    main()

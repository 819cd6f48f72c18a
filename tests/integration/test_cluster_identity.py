"""Issue 4 across a 3-node cluster (cluster.py), with a leader kill -9 in
the middle of a mixed workload.

  (a) identical ledgers: after enrolls, state changes (allowed and
      rejected), a key rotation (new key alone refused, then signed by the
      new and the current key), telemetry, command
      issues, wrong-role and wrong-gateway denials, and a stream of keyed
      enrolls that runs through the kill, the old leader is restarted and
      every node reports the same Audit.Head (Head is always local) at the
      same applied index; each node's whole ledger (serializable Read) is
      identical entry for entry; every keyed enroll has exactly one ENROLL
      entry; `wardenctl audit export` through each node's endpoint, then
      `wardenctl audit verify`, passes, and the export matches the ledgers.
  (b) telemetry window across failover: counters accepted by the old
      leader are REPLAY on the new one (the byte-identical signed request);
      a reordered, never-seen in-window counter is ACCEPTED once, then
      REPLAY.
  (c) control sequence across failover: IssueCommand before the kill gives
      seq s, after it s+1 with the same command key; `wardenctl
      verify-command` accepts the new envelope after s and rejects the old
      one as a replay.

Device keys and signatures come from the openssl CLI through
test_identity.py's helpers (Key, telemetry_message, rotate_message).
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
import test_identity as ti  # noqa: E402  (helpers only; its TestCase is not collected here)
from cluster import grpc  # noqa: E402

wt = ct.wt
inv, tlm, ctl, aud = ti.inv, ti.tlm, ti.ctl, ti.aud
S, R, A, O = ti.S, ti.R, ti.A, ti.O
SC = grpc.StatusCode

for _path, (_rq, _rs) in ti.METHODS.items():
    wt.METHODS.setdefault(_path, (_rq, _rs, False))

ENROLL = "/warden.v1.Inventory/EnrollDevice"
SET_STATE = "/warden.v1.Inventory/SetDeviceState"
NONCE = "/warden.v1.Inventory/IssueRotationNonce"
ROTATE = "/warden.v1.Inventory/RotateDeviceKey"
SUBMIT = "/warden.v1.Telemetry/Submit"
ISSUE = "/warden.v1.Control/IssueCommand"
GETKEY = "/warden.v1.Control/GetCommandKey"
ROTKEY = "/warden.v1.Control/RotateCommandKey"
READ = "/warden.v1.Audit/Read"
HEAD = "/warden.v1.Audit/Head"

# ---- limits -------------------------------------------------------------------
# The cluster certificates name the gateway principal "gateway".
GATEWAY = "gateway"
# Denials reach the ledger at the leader's next flush (1 s); the command key
# is bootstrapped within a poll or two of the election.
FLUSH_WAIT_S = 10.0
BOOT_WAIT_S = 15.0
CLI_TIMEOUT_S = 60.0
# Keyed enrolls written by the background writer: it runs from before the
# kill until phase 2 is done (at most STREAM_WRITES_MAX, one every
# STREAM_PAUSE_S), and must have writes acknowledged on both sides of the
# kill. The bound on one enroll's retries (elections) and per attempt.
STREAM_WRITES_MAX = 2000
STREAM_PAUSE_S = 0.01
STREAM_RETRY_S = 30.0
STREAM_CALL_S = 3.0
# Writes the stream must have acknowledged before the kill (bounded wait).
STREAM_BEFORE_KILL = 10
STREAM_WAIT_S = 30.0
# Head probes until all three answer at one applied index (a Tick commits
# every second; three local Heads take a few ms).
HEAD_TRIES = 200
HEAD_PAUSE_S = 0.02
# Ledger pages per node (1000 entries each).
LEDGER_PAGES_MAX = 100
SERIALIZABLE_MD = (("warden-consistency", "serializable"),)


class ClusterIdentityTest(ct.TestCase):
    c = None

    @classmethod
    def setUpClass(cls):
        cls.c = ct.Cluster(n=3, name="identity")
        try:
            cls.c.start()
            cls.c.wait_leader()
        except BaseException:
            cls.c.dump()
            raise
        cls.keydir = os.path.join(cls.c.tmp, "keys")
        os.makedirs(cls.keydir, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        if cls.c is not None:
            cls.c.close()

    # -- helpers --
    def call(self, path, req, role="admin", **kw):
        return self.c.call(path, req, role=role, **kw)

    def enroll(self, key, gateway=GATEWAY, active=True, idem=None):
        did = wt.uid("cid")
        r = self.call(ENROLL, inv.EnrollDeviceRequest(
            device_id=did, key_algorithm=key.alg, public_key=key.public,
            attestation_digest=wt.digest32(did), hardware_model="m",
            firmware_version="1.0", gateway_id=gateway, idempotency_key=idem or did))
        self.assertEqual(r.device.state, S.DEVICE_STATE_PROVISIONED)
        if active:
            self.set_state(did, S.DEVICE_STATE_ACTIVE)
        return did

    def set_state(self, did, st, role="operator"):
        return self.call(SET_STATE, inv.SetDeviceStateRequest(device_id=did, state=st,
                                                              reason="cluster test"),
                         role=role)

    def submit_req(self, did, key, epoch, counter, payload=b"p"):
        dg = hashlib.sha256(payload).digest()
        sig = key.sign(ti.telemetry_message(did, epoch, counter, dg))
        return tlm.SubmitTelemetryRequest(device_id=did, key_epoch=epoch, counter=counter,
                                          payload_digest=dg, signature=sig, payload=payload)

    def submit(self, req):
        return self.call(SUBMIT, req, role="gateway")

    def ledger(self, nd):
        """nd's whole ledger, serializable (local), paged and bounded."""
        stub = self.c.channel(nd, "auditor").unary_unary(
            READ, request_serializer=aud.ReadAuditRequest.SerializeToString,
            response_deserializer=aud.ReadAuditResponse.FromString)
        out, from_seq = [], 1
        for _ in range(LEDGER_PAGES_MAX):
            r = stub(aud.ReadAuditRequest(from_seq=from_seq, max_entries=1000),
                     timeout=ct.RPC_TIMEOUT_S, metadata=SERIALIZABLE_MD)
            out.extend(r.entries)
            if not r.entries or r.next_seq > r.head_seq:
                return out
            from_seq = r.next_seq
        self.fail("n%d: ledger longer than %d pages" % (nd.id, LEDGER_PAGES_MAX))

    def head(self, nd):
        return wt.stub(self.c.channel(nd, "auditor"), HEAD)(aud.AuditHeadRequest(),
                                                             timeout=ct.RPC_TIMEOUT_S)

    def wait_ledger(self, nd, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [e for e in self.ledger(nd) if pred(e)]
            if hits:
                return hits
            time.sleep(0.2)
        self.fail("n%d: no matching audit entry within %.0fs" % (nd.id, timeout))

    def wardenctl(self, endpoint, *args, check=None):
        """endpoint None: an offline command (no server, no TLS files)."""
        cmd = [wt.WARDENCTL]
        if endpoint is not None:
            cmd += ["--endpoint", endpoint, "--dev-certs", self.c.certs]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
        out = (r.stdout + r.stderr).decode(errors="replace")
        if check is not None:
            self.assertEqual(r.returncode, check, "wardenctl %s: %s" % (" ".join(args), out))
        return r, out

    def verify_command(self, r, key, did, last_seq):
        rc, out = self.wardenctl(None, "verify-command", "--envelope-hex", r.envelope.hex(),
                                 "--signature-hex", r.signature.hex(),
                                 "--pubkey-hex", key.public_key.hex(), "--device", did,
                                 "--key-epoch", str(r.key_epoch), "--last-seq", str(last_seq))
        return rc.returncode

    def command_key(self, key_id=""):
        deadline = time.monotonic() + BOOT_WAIT_S
        while True:
            try:
                return self.call(GETKEY, ctl.GetCommandKeyRequest(key_id=key_id),
                                 role="gateway")
            except grpc.RpcError as ex:
                if ex.code() != SC.NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- the test --
    def test_mixed_workload_leader_kill_identical_ledgers(self):
        c = self.c
        t_start = time.monotonic()
        leader = c.wait_leader()
        self.command_key()  # the leader's bootstrap key k1 exists

        # ---- phase 1, before the kill ----
        ed = ti.Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        p256 = ti.Key(inv.KEY_ALGORITHM_ECDSA_P256, self.keydir)
        d_tel = self.enroll(ed)
        d_cmd = self.enroll(p256)
        rot_old = ti.Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        d_rot = self.enroll(rot_old)
        d_other = self.enroll(ed, gateway="other-gateway")
        d_prov = self.enroll(ed, active=False)
        # Rejected transition (audited REJECTED), and a quarantine round trip.
        self.assertRpcError(SC.FAILED_PRECONDITION, self.set_state, d_prov,
                            S.DEVICE_STATE_QUARANTINED)
        self.set_state(d_rot, S.DEVICE_STATE_QUARANTINED)
        self.set_state(d_rot, S.DEVICE_STATE_ACTIVE)
        # Key rotation: the new key proves possession and the device's
        # current key consents (docs/freshness.md). The new key alone (what
        # a compromised gateway can produce) is refused, audited DENIED on
        # every node, and leaves the nonce usable.
        n = self.call(NONCE, inv.IssueRotationNonceRequest(device_id=d_rot), role="gateway")
        new = ti.Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        msg = ti.rotate_message(d_rot, n.new_key_epoch, new, n.nonce)
        pop = new.sign(msg)
        self.assertRpcError(SC.PERMISSION_DENIED, self.call, ROTATE,
                            inv.RotateDeviceKeyRequest(
                                device_id=d_rot, key_algorithm=new.alg,
                                public_key=new.public, new_key_signature=pop),
                            role="gateway")
        r = self.call(ROTATE, inv.RotateDeviceKeyRequest(
            device_id=d_rot, key_algorithm=new.alg, public_key=new.public,
            new_key_signature=pop, current_key_signature=rot_old.sign(msg)),
            role="gateway")
        self.assertEqual(r.device.key_epoch, 2)
        # Telemetry accepted by the old leader; 8 and 9 never sent.
        sent = {}
        for k in (1, 2, 3, 4, 5, 10):
            sent[k] = self.submit_req(d_tel, ed, 1, k)
            self.assertEqual(self.submit(sent[k]).result, R.TELEMETRY_RESULT_ACCEPTED, k)
        # Control command before the kill: seq s.
        c1 = self.call(ISSUE, ctl.IssueCommandRequest(device_id=d_cmd, payload=b"\x01reboot"),
                       role="operator")
        s = c1.seq
        self.assertGreaterEqual(s, 1)
        # Denials, at the leader (a follower's denials stay in its log,
        # docs/operations-cluster.md): wrong role, and a device bound to
        # another gateway.
        for _ in range(3):
            self.assertRpcError(SC.PERMISSION_DENIED, self.call, ROTKEY,
                                ctl.RotateCommandKeyRequest(key_id="nope"), role="auditor",
                                node=leader)
        self.assertRpcError(SC.PERMISSION_DENIED, self.submit_on, leader,
                            self.submit_req(d_other, ed, 1, 1))
        self.wait_ledger(leader, lambda e: (e.action == A.AUDIT_ACTION_AUTHZ_DENIAL
                                            and e.principal_name == "auditor"), FLUSH_WAIT_S)

        # ---- a keyed enroll stream through the kill ----
        stream_ids, stream_errs = [], []
        stream_acked_at = []            # monotonic time of each ack
        stream_retries = [0]
        stop = threading.Event()
        acked = threading.Semaphore(0)

        def writer():
            for k in range(STREAM_WRITES_MAX):
                if stop.is_set():
                    return
                did = "cid-stream-%d-%04d" % (wt.SEED, k)
                deadline = time.monotonic() + STREAM_RETRY_S
                while True:
                    try:
                        c.call(ENROLL, ct.enroll_req(did, idem=did, gateway=GATEWAY),
                               timeout=STREAM_CALL_S, process="stream",
                               deadline_s=STREAM_CALL_S * 3)
                        break
                    except grpc.RpcError as ex:
                        # Ambiguous or no leader: retry with the same key.
                        if (ex.code() not in (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED)
                                or time.monotonic() > deadline):
                            stream_errs.append((did, ex.code().name, ex.details()))
                            return
                        stream_retries[0] += 1
                        time.sleep(0.1)
                stream_ids.append(did)
                stream_acked_at.append(time.monotonic())
                acked.release()
                time.sleep(STREAM_PAUSE_S)

        th = threading.Thread(target=writer, daemon=True)
        th.start()
        for _ in range(STREAM_BEFORE_KILL):
            self.assertTrue(acked.acquire(timeout=STREAM_WAIT_S), "stream stalled before kill")

        old = leader
        t_kill = time.monotonic()
        old.kill9()
        leader = c.wait_leader(exclude=(old.id,))
        t_elected = time.monotonic() - t_kill

        # ---- phase 2, on the new leader ----
        # (b) the window survived the failover.
        for k in (3, 10):
            self.assertEqual(self.submit(sent[k]).result, R.TELEMETRY_RESULT_REPLAY,
                             "counter %d accepted by n%d, replayed on n%d" % (k, old.id, leader.id))
        r8 = self.submit_req(d_tel, ed, 1, 8)
        self.assertEqual(self.submit(r8).result, R.TELEMETRY_RESULT_ACCEPTED)
        self.assertEqual(self.submit(r8).result, R.TELEMETRY_RESULT_REPLAY)
        self.assertEqual(self.submit(self.submit_req(d_tel, ed, 1, 11)).result,
                         R.TELEMETRY_RESULT_ACCEPTED)
        # (c) the command sequence goes on, never reused.
        c2 = self.call(ISSUE, ctl.IssueCommandRequest(device_id=d_cmd, payload=b"\x02"),
                       role="operator")
        self.assertEqual((c2.seq, c2.key_id), (s + 1, c1.key_id))
        key = self.command_key(c2.key_id)
        self.assertEqual(self.verify_command(c2, key, d_cmd, s), 0)
        self.assertEqual(self.verify_command(c1, key, d_cmd, s), 1)   # replay
        self.assertEqual(self.verify_command(c2, key, d_cmd, s + 1), 1)
        # More of the mix on the new leader.
        self.set_state(d_cmd, S.DEVICE_STATE_QUARANTINED)
        self.assertRpcError(SC.FAILED_PRECONDITION, self.set_state, d_prov,
                            S.DEVICE_STATE_PROVISIONED)
        for _ in range(2):
            self.assertRpcError(SC.PERMISSION_DENIED, self.call, ROTKEY,
                                ctl.RotateCommandKeyRequest(key_id="nope2"), role="gateway",
                                node=leader)
        stop.set()
        th.join(timeout=STREAM_RETRY_S * 2)
        self.assertFalse(th.is_alive(), "stream writer still running")
        self.assertEqual(stream_errs, [])
        after_kill = sum(1 for t in stream_acked_at if t > t_kill)
        self.assertGreater(after_kill, 0, "no stream write acknowledged after the kill")
        self.assertLess(after_kill, len(stream_ids), "no stream write before the kill")
        self.wait_ledger(leader, lambda e: (e.action == A.AUDIT_ACTION_AUTHZ_DENIAL
                                            and e.target == ROTKEY
                                            and e.principal_name == "gateway"), FLUSH_WAIT_S)

        # ---- (a) the old leader rejoins; identical ledgers everywhere ----
        old.restart()
        c.wait_converged()
        heads = None
        for _ in range(HEAD_TRIES):
            hs = {nd.id: self.head(nd) for nd in c.running()}
            if len({h.applied_index for h in hs.values()}) == 1:
                heads = hs
                break
            time.sleep(HEAD_PAUSE_S)
        self.assertIsNotNone(heads, "no common applied index in %d tries: %s" % (
            HEAD_TRIES, {i: (h.applied_index, h.seq) for i, h in hs.items()}))
        self.assertEqual(len(heads), 3)
        ref = heads[leader.id]
        for i, h in heads.items():
            self.assertEqual((h.seq, h.hash), (ref.seq, ref.hash),
                             "n%d head differs at applied index %d" % (i, h.applied_index))
        H = ref.seq
        ledgers = {nd.id: self.ledger(nd)[:H] for nd in c.running()}
        for i, es in ledgers.items():
            self.assertEqual([e.seq for e in es], list(range(1, H + 1)), "n%d" % i)
            self.assertEqual(es, ledgers[leader.id], "n%d ledger differs" % i)
        es = ledgers[leader.id]
        self.assertEqual(es[-1].entry_hash, ref.hash)
        # Exactly one ENROLL entry per keyed stream write (no double apply
        # across the failover), and each action of the mix is present.
        enrolls = {}
        for e in es:
            if e.action == A.AUDIT_ACTION_ENROLL:
                enrolls[e.target] = enrolls.get(e.target, 0) + 1
        self.assertEqual({d: enrolls.get(d) for d in stream_ids},
                         {d: 1 for d in stream_ids})
        actions = {e.action for e in es}
        for a in (A.AUDIT_ACTION_ENROLL, A.AUDIT_ACTION_STATE_CHANGE, A.AUDIT_ACTION_KEY_ROTATE,
                  A.AUDIT_ACTION_COMMAND_ISSUE, A.AUDIT_ACTION_AUTHZ_DENIAL,
                  A.AUDIT_ACTION_COMMAND_KEY_ROTATE):
            self.assertIn(a, actions, A.Name(a))
        self.assertEqual(len([e for e in es if e.action == A.AUDIT_ACTION_COMMAND_ISSUE
                              and e.target == d_cmd]), 2)
        # The refused new-key-only rotation, then the consented one.
        self.assertEqual([e.outcome for e in es if e.action == A.AUDIT_ACTION_KEY_ROTATE
                          and e.target == d_rot],
                         [O.AUDIT_OUTCOME_DENIED, O.AUDIT_OUTCOME_OK])
        rejected = [e for e in es if e.target == d_prov and e.outcome == O.AUDIT_OUTCOME_REJECTED]
        self.assertEqual(len(rejected), 2)

        # Export through each node's endpoint (wardenctl follows the leader
        # for the linearizable Read), then verify offline.
        for nd in c.running():
            f = os.path.join(c.tmp, "audit-n%d.export" % nd.id)
            self.wardenctl(nd.client, "--role", "auditor", "audit", "export",
                           "--to", str(H), f, check=0)
            _, out = self.wardenctl(None, "audit", "verify", f, check=0)
            self.assertIn("intact", out)
            with open(f) as fh:
                lines = [json.loads(x) for x in fh]
            self.assertEqual(lines[0]["to_seq"], H)
            self.assertEqual([x["entry_hash"] for x in lines[1:]],
                             [e.entry_hash.hex() for e in es], "export via n%d" % nd.id)
        print("\n  identity: %d ledger entries identical on n%s (applied %d); new leader "
              "n%d elected %.2fs after kill -9 of n%d; %d keyed enrolls (%d acked after the "
              "kill, %d retries); command seq %d -> %d; total %.1fs"
              % (H, sorted(heads), ref.applied_index, leader.id, t_elected, old.id,
                 len(stream_ids), after_kill, stream_retries[0], s, c2.seq,
                 time.monotonic() - t_start), file=sys.stderr)

    def submit_on(self, nd, req):
        return self.call(SUBMIT, req, role="gateway", node=nd, first_attempt_only=True)


if __name__ == "__main__":
    ct.main()

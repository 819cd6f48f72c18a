"""Issue 4 end to end through wardend's gRPC glue (one `wardend --dev`).

What it shows, with real processes on loopback and python3-grpcio:
  - the leader bootstraps the command key (k1, principal n1, role peer),
    exactly one COMMAND_KEY_ROTATE entry;
  - lifecycle over gRPC: every allowed transition OK, forbidden ones
    FAILED_PRECONDITION, one audit entry each (REJECTED for the refused);
  - key rotation (Ed25519, P-256 and across them, signed with the openssl
    CLI): the gateway gets a server nonce, the new key (proof of
    possession) and the device's current key (consent) both sign the v2
    message, key_epoch goes up; telemetry signed with the old epoch is
    STALE_EPOCH; the new key alone (the compromised-gateway attack), a
    consent by another key or for another new key, and a replayed v1
    message are PERMISSION_DENIED, audited DENIED, and leave the nonce
    usable; a consumed nonce cannot be reused; `wardenctl device
    rotate-key --current-key-file` does the same;
  - telemetry window: ACCEPTED, REPLAY, reordered within the window, the
    window boundary (h-1023 accepted, h-1024 TOO_OLD), STALE_EPOCH;
  - gateway binding: a gateway acting for a device bound elsewhere is
    PERMISSION_DENIED and shows up as an aggregated AUTHZ_DENIAL entry;
  - a wrong-role call (grpc role gate) becomes an AUTHZ_DENIAL entry within
    a bounded wait (the leader flushes denials every second);
  - IssueCommand returns an envelope that `wardenctl verify-command`
    accepts with the published key, and rejects as a replay;
  - Audit Head/Read/Tail agree; Tail delivers an entry committed after it
    opened; `wardenctl audit export` + `audit verify` pass.
"""

import hashlib
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
import grpc  # noqa: E402

# ---- limits -------------------------------------------------------------------
# Denials reach the ledger at the leader's next flush (SVC_DENIAL_FLUSH_MS =
# 1 s); the bootstrap key within a poll or two of the election.
FLUSH_WAIT_S = 8.0
BOOT_WAIT_S = 10.0
RPC_TIMEOUT_S = 10.0
TAIL_WAIT_S = 10.0
CLI_TIMEOUT_S = 30.0
FRESH_WINDOW = 1024


def _load(rel):
    src = os.path.join(wt.SRC, "proto", rel)
    out = os.path.join(wt.PY_OUT, rel[:-len(".proto")] + "_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + wt.PY_OUT,
                        "-I" + os.path.join(wt.SRC, "proto"), src],
                       check=True, timeout=wt.TOOL_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location(
        "identity_pb_" + os.path.basename(out)[:-3], out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


inv = wt.inv_pb2
aud = _load("warden/v1/audit.proto")
tlm = _load("warden/v1/telemetry.proto")
ctl = _load("warden/v1/control.proto")

METHODS = {
    "/warden.v1.Inventory/EnrollDevice": (inv.EnrollDeviceRequest, inv.EnrollDeviceResponse),
    "/warden.v1.Inventory/GetDevice": (inv.GetDeviceRequest, inv.GetDeviceResponse),
    "/warden.v1.Inventory/SetDeviceState": (inv.SetDeviceStateRequest, inv.SetDeviceStateResponse),
    "/warden.v1.Inventory/ReEnrollDevice": (inv.ReEnrollDeviceRequest, inv.ReEnrollDeviceResponse),
    "/warden.v1.Inventory/RebindDevice": (inv.RebindDeviceRequest, inv.RebindDeviceResponse),
    "/warden.v1.Inventory/IssueRotationNonce":
        (inv.IssueRotationNonceRequest, inv.IssueRotationNonceResponse),
    "/warden.v1.Inventory/RotateDeviceKey": (inv.RotateDeviceKeyRequest, inv.RotateDeviceKeyResponse),
    "/warden.v1.Inventory/EnrollDevices": (inv.EnrollDevicesRequest, inv.EnrollDevicesResponse),
    "/warden.v1.Telemetry/Submit": (tlm.SubmitTelemetryRequest, tlm.SubmitTelemetryResponse),
    "/warden.v1.Control/IssueCommand": (ctl.IssueCommandRequest, ctl.IssueCommandResponse),
    "/warden.v1.Control/GetCommandKey": (ctl.GetCommandKeyRequest, ctl.GetCommandKeyResponse),
    "/warden.v1.Control/RotateCommandKey":
        (ctl.RotateCommandKeyRequest, ctl.RotateCommandKeyResponse),
    "/warden.v1.Audit/Read": (aud.ReadAuditRequest, aud.ReadAuditResponse),
    "/warden.v1.Audit/Head": (aud.AuditHeadRequest, aud.AuditHeadResponse),
}

S = inv.DeviceState
R = tlm.TelemetryResult
A = aud.AuditAction
O = aud.AuditOutcome


# ---- device keys via the openssl CLI ---------------------------------------------
class Key:
    """A device key: alg (inv.KeyAlgorithm), public bytes, sign(msg)."""

    def __init__(self, alg, directory):
        self.alg = alg
        fd, self.path = tempfile.mkstemp(suffix=".pem", dir=directory)
        os.close(fd)
        if alg == inv.KEY_ALGORITHM_ED25519:
            pem = wt._openssl("genpkey", "-algorithm", "ed25519")
        else:
            pem = wt._openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                              "ec_paramgen_curve:P-256")
        with open(self.path, "wb") as f:
            f.write(pem)
        der = wt._openssl("pkey", "-in", self.path, "-pubout", "-outform", "DER")
        self.public = der[-32:] if alg == inv.KEY_ALGORITHM_ED25519 else der
        # The canonical form the rotation message binds: Ed25519 the raw 32
        # bytes, P-256 the 65-byte uncompressed point (the SPKI's BIT
        # STRING, which ends the DER).
        self.canon = der[-32:] if alg == inv.KEY_ALGORITHM_ED25519 else der[-65:]

    def sign(self, msg):
        if self.alg == inv.KEY_ALGORITHM_ED25519:
            # PureEdDSA over the raw message (RFC 8032). One-shot signing
            # needs the input's size, so it reads a file, not stdin.
            with open(self.path + ".msg", "wb") as f:
                f.write(msg)
            return wt._openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.path,
                               "-in", self.path + ".msg")
        return wt._openssl("dgst", "-sha256", "-sign", self.path, inp=msg)  # DER


def canon_bytes(b):
    return struct.pack(">I", len(b)) + b


def rotate_message(device_id, new_epoch, new_key, nonce):
    """docs/freshness.md: what the new key AND the current key sign."""
    return (b"warden.rotate.v2" + canon_bytes(device_id.encode())
            + struct.pack(">QQ", new_epoch - 1, new_epoch)
            + canon_bytes(new_key.canon) + nonce)


def rotate_message_v1(device_id, new_epoch, nonce):
    """The pre-fix message, signed by the new key only: must be refused."""
    return (b"warden.rotate.v1" + canon_bytes(device_id.encode())
            + struct.pack(">Q", new_epoch) + nonce)


def telemetry_message(device_id, key_epoch, counter, digest):
    return (b"warden.telemetry.v1" + canon_bytes(device_id.encode())
            + struct.pack(">QQ", key_epoch, counter) + digest)


class IdentityTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = wt.start_server(name="identity")
        cls.keydir = tempfile.mkdtemp(prefix="warden-keys-", dir=cls.srv.tmp)
        cls.chans = {}

    @classmethod
    def tearDownClass(cls):
        for ch in cls.chans.values():
            ch.close()
        cls.srv.stop()

    # -- helpers --
    def call(self, role, path, req, metadata=None):
        ch = self.chans.get(role)
        if ch is None:
            ch = self.chans[role] = self.srv.channel(role)
        rq, rs = METHODS[path]
        fn = ch.unary_unary(path, request_serializer=rq.SerializeToString,
                            response_deserializer=rs.FromString)
        return fn(req, timeout=RPC_TIMEOUT_S, metadata=metadata)

    def enroll(self, key, gateway="dev-gateway", active=True):
        did = wt.uid("id")
        r = self.call("admin", "/warden.v1.Inventory/EnrollDevice", inv.EnrollDeviceRequest(
            device_id=did, key_algorithm=key.alg, public_key=key.public,
            attestation_digest=wt.digest32(did), hardware_model="m",
            firmware_version="1.0", gateway_id=gateway))
        self.assertEqual(r.device.state, S.DEVICE_STATE_PROVISIONED)
        if active:
            self.set_state(did, S.DEVICE_STATE_ACTIVE)
        return did

    def set_state(self, did, st, role="operator"):
        return self.call(role, "/warden.v1.Inventory/SetDeviceState",
                         inv.SetDeviceStateRequest(device_id=did, state=st, reason="test"))

    def submit(self, did, key, epoch, counter, role="gateway", payload=b"p", sig=None):
        dg = hashlib.sha256(payload).digest()
        if sig is None:
            sig = key.sign(telemetry_message(did, epoch, counter, dg))
        return self.call(role, "/warden.v1.Telemetry/Submit", tlm.SubmitTelemetryRequest(
            device_id=did, key_epoch=epoch, counter=counter, payload_digest=dg,
            signature=sig, payload=payload))

    def ledger(self, from_seq=1):
        out = []
        while True:
            r = self.call("auditor", "/warden.v1.Audit/Read",
                          aud.ReadAuditRequest(from_seq=from_seq, max_entries=1000))
            out.extend(r.entries)
            if not r.entries or r.next_seq > r.head_seq:
                return out
            from_seq = r.next_seq

    def entries_for(self, target):
        return [e for e in self.ledger() if e.target == target]

    def wait_entry(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [e for e in self.ledger() if pred(e)]
            if hits:
                return hits
            time.sleep(0.2)
        self.fail("no matching audit entry within %.0fs" % timeout)

    def ctl(self, *args, check=None):
        cmd = [wt.WARDENCTL, "--endpoint", self.srv.addr, "--dev-certs", self.srv.certs,
               *args]
        r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
        if check is not None:
            self.assertEqual(r.returncode, check, "%s: %s %s" % (
                " ".join(args), r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    # -- tests --
    def test_bootstrap_command_key(self):
        deadline = time.monotonic() + BOOT_WAIT_S
        while True:
            try:
                k = self.call("gateway", "/warden.v1.Control/GetCommandKey",
                              ctl.GetCommandKeyRequest())
                break
            except grpc.RpcError as ex:
                if ex.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.assertEqual(k.key_id, "k1")
        self.assertEqual(len(k.public_key), 32)
        self.assertTrue(k.current)
        boots = [e for e in self.ledger()
                 if e.action == A.AUDIT_ACTION_COMMAND_KEY_ROTATE and e.target == "k1"]
        self.assertEqual(len(boots), 1, boots)
        self.assertEqual(boots[0].principal_name, "n1")
        self.assertEqual(boots[0].principal_role, 32)  # WROLE_PEER
        self.assertEqual(boots[0].outcome, O.AUDIT_OUTCOME_OK)

    def test_state_transitions(self):
        key = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = self.enroll(key, active=False)
        FP = grpc.StatusCode.FAILED_PRECONDITION
        steps = [  # (to, ok?)
            (S.DEVICE_STATE_QUARANTINED, False),   # PROVISIONED -> QUARANTINED
            (S.DEVICE_STATE_PROVISIONED, False),   # same state
            (S.DEVICE_STATE_ACTIVE, True),
            (S.DEVICE_STATE_PROVISIONED, False),
            (S.DEVICE_STATE_QUARANTINED, True),
            (S.DEVICE_STATE_ACTIVE, True),
            (S.DEVICE_STATE_QUARANTINED, True),
            (S.DEVICE_STATE_REVOKED, True),
            (S.DEVICE_STATE_ACTIVE, False),        # REVOKED is terminal
            (S.DEVICE_STATE_REVOKED, False),
        ]
        for to, ok in steps:
            if ok:
                self.assertEqual(self.set_state(did, to).device.state, to)
            else:
                self.assertRpcError(FP, self.set_state, did, to)
        # Only an admin may re-enroll; the operator is stopped at the role
        # gate (aggregated denial, not a per-call entry).
        new = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        req = inv.ReEnrollDeviceRequest(device_id=did, key_algorithm=new.alg,
                                        public_key=new.public,
                                        attestation_digest=wt.digest32("re"))
        self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.call, "operator",
                            "/warden.v1.Inventory/ReEnrollDevice", req)
        r = self.call("admin", "/warden.v1.Inventory/ReEnrollDevice", req)
        self.assertEqual(r.device.identity_epoch, 2)
        self.assertEqual(r.device.state, S.DEVICE_STATE_PROVISIONED)
        # Exactly one entry per action, in order.
        es = self.entries_for(did)
        kinds = [(e.action, e.outcome) for e in es]
        want = [(A.AUDIT_ACTION_ENROLL, O.AUDIT_OUTCOME_OK)]
        for _, ok in steps:
            want.append((A.AUDIT_ACTION_STATE_CHANGE,
                         O.AUDIT_OUTCOME_OK if ok else O.AUDIT_OUTCOME_REJECTED))
        want.append((A.AUDIT_ACTION_REENROLL, O.AUDIT_OUTCOME_OK))
        self.assertEqual(kinds, want)

    def rotate(self, did, new, new_sig, cur_sig):
        return self.call("gateway", "/warden.v1.Inventory/RotateDeviceKey",
                         inv.RotateDeviceKeyRequest(
                             device_id=did, key_algorithm=new.alg, public_key=new.public,
                             new_key_signature=new_sig, current_key_signature=cur_sig))

    def _rotation(self, alg, cur_alg=None):
        old = Key(cur_alg or alg, self.keydir)
        did = self.enroll(old)
        self.assertEqual(self.submit(did, old, 1, 1).result, R.TELEMETRY_RESULT_ACCEPTED)
        n = self.call("gateway", "/warden.v1.Inventory/IssueRotationNonce",
                      inv.IssueRotationNonceRequest(device_id=did, nonce=b"client-chosen"))
        self.assertEqual(len(n.nonce), 32)
        self.assertNotEqual(n.nonce[:13], b"client-chosen")  # leader-filled
        self.assertEqual(n.new_key_epoch, 2)
        new = Key(alg, self.keydir)
        other = Key(alg, self.keydir)
        msg = rotate_message(did, 2, new, n.nonce)
        pop, consent = new.sign(msg), old.sign(msg)
        PD = grpc.StatusCode.PERMISSION_DENIED
        denied = 0
        # A proof signed by the OLD key does not prove the new one.
        self.assertRpcError(PD, self.rotate, did, new, consent, consent)
        denied += 1
        # The compromised-gateway attack: the gateway's own new key proves
        # possession, but the device's current key never signed.
        self.assertRpcError(PD, self.rotate, did, new, pop, b"")
        self.assertRpcError(PD, self.rotate, did, new, pop, other.sign(msg))
        denied += 2
        # The device consented to `other`; its consent does not cover `new`.
        self.assertRpcError(PD, self.rotate, did, new, pop,
                            old.sign(rotate_message(did, 2, other, n.nonce)))
        denied += 1
        # A replayed v1 message (new key only, old format), also with a v1
        # signature by the current key.
        v1 = rotate_message_v1(did, 2, n.nonce)
        self.assertRpcError(PD, self.rotate, did, new, new.sign(v1), b"")
        self.assertRpcError(PD, self.rotate, did, new, new.sign(v1), old.sign(v1))
        denied += 2
        # None of that consumed the nonce: both signatures rotate.
        r = self.rotate(did, new, pop, consent)
        self.assertEqual(r.device.key_epoch, 2)
        self.assertEqual(r.device.public_key, new.canon)
        # The nonce is consumed.
        newer = Key(alg, self.keydir)
        m3 = rotate_message(did, 3, newer, n.nonce)
        self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.rotate, did,
                            newer, newer.sign(m3), new.sign(m3))
        # The old key (epoch 1) is rejected from now on; the new one works.
        self.assertEqual(self.submit(did, old, 1, 2).result, R.TELEMETRY_RESULT_STALE_EPOCH)
        self.assertEqual(self.submit(did, new, 2, 3).result, R.TELEMETRY_RESULT_ACCEPTED)
        rot = [e for e in self.entries_for(did) if e.action == A.AUDIT_ACTION_KEY_ROTATE]
        self.assertEqual([(e.outcome, e.principal_name) for e in rot],
                         [(O.AUDIT_OUTCOME_DENIED, "dev-gateway")] * denied
                         + [(O.AUDIT_OUTCOME_OK, "dev-gateway"),
                            (O.AUDIT_OUTCOME_REJECTED, "dev-gateway")])
        return did, new

    def test_rotation_pop_ed25519(self):
        self._rotation(inv.KEY_ALGORITHM_ED25519)

    def test_rotation_pop_p256(self):
        self._rotation(inv.KEY_ALGORITHM_ECDSA_P256)

    def test_rotation_across_algorithms(self):
        self._rotation(inv.KEY_ALGORITHM_ECDSA_P256, cur_alg=inv.KEY_ALGORITHM_ED25519)

    def test_rotate_key_cli(self):
        """`wardenctl device rotate-key`: both keys sign; the new key alone
        (the old attack) is refused before anything is sent."""
        old = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = self.enroll(old)
        new = Key(inv.KEY_ALGORITHM_ECDSA_P256, self.keydir)
        other = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        base = ["--role", "gateway", "device", "rotate-key", did,
                "--private-key-file", new.path]
        self.ctl(*base, check=64)                        # no --current-key-file: usage
        # A current key that is not the device's: PERMISSION_DENIED (exit 7).
        self.ctl(*base, "--current-key-file", other.path, check=7)
        self.ctl(*base, "--current-key-file", old.path, check=0)
        d = self.call("gateway", "/warden.v1.Inventory/GetDevice",
                      inv.GetDeviceRequest(device_id=did)).device
        self.assertEqual((d.key_epoch, d.key_algorithm, d.public_key),
                         (2, new.alg, new.canon))
        self.assertEqual(self.submit(did, new, 2, 1).result, R.TELEMETRY_RESULT_ACCEPTED)
        self.assertEqual(self.submit(did, old, 1, 2).result, R.TELEMETRY_RESULT_STALE_EPOCH)

    def test_telemetry_window(self):
        key = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = self.enroll(key)
        sub = lambda c: self.submit(did, key, 1, c)  # noqa: E731
        self.assertEqual(sub(10).result, R.TELEMETRY_RESULT_ACCEPTED)
        self.assertEqual(sub(10).result, R.TELEMETRY_RESULT_REPLAY)
        self.assertEqual(sub(12).result, R.TELEMETRY_RESULT_ACCEPTED)
        self.assertEqual(sub(11).result, R.TELEMETRY_RESULT_ACCEPTED)  # reordered
        self.assertEqual(sub(11).result, R.TELEMETRY_RESULT_REPLAY)
        h = 3000
        r = sub(h)
        self.assertEqual((r.result, r.highest_counter), (R.TELEMETRY_RESULT_ACCEPTED, h))
        self.assertEqual(sub(h - FRESH_WINDOW + 1).result, R.TELEMETRY_RESULT_ACCEPTED)
        self.assertEqual(sub(h - FRESH_WINDOW).result, R.TELEMETRY_RESULT_TOO_OLD)
        self.assertEqual(sub(12).result, R.TELEMETRY_RESULT_TOO_OLD)
        self.assertEqual(self.submit(did, key, 2, h + 1).result,
                         R.TELEMETRY_RESULT_STALE_EPOCH)
        self.assertEqual(self.submit(did, key, 1, h + 2, sig=b"\0" * 64).result,
                         R.TELEMETRY_RESULT_BAD_SIGNATURE)
        self.assertEqual(self.submit(wt.uid("nobody"), key, 1, 1).result,
                         R.TELEMETRY_RESULT_UNKNOWN_DEVICE)
        # Verdicts are counted, not audited (docs/audit.md): no entry.
        self.assertEqual([e.action for e in self.entries_for(did)],
                         [A.AUDIT_ACTION_ENROLL, A.AUDIT_ACTION_STATE_CHANGE])

    def test_gateway_binding_denied_and_audited(self):
        key = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = self.enroll(key, gateway="other-gateway")
        PD = grpc.StatusCode.PERMISSION_DENIED
        self.assertRpcError(PD, self.submit, did, key, 1, 1)
        self.assertRpcError(PD, self.call, "gateway", "/warden.v1.Inventory/IssueRotationNonce",
                            inv.IssueRotationNonceRequest(device_id=did))
        self.assertRpcError(PD, self.call, "gateway", "/warden.v1.Inventory/GetDevice",
                            inv.GetDeviceRequest(device_id=did))
        # Rebinding is an operator action; then the gateway may act.
        self.call("operator", "/warden.v1.Inventory/RebindDevice",
                  inv.RebindDeviceRequest(device_id=did, gateway_id="dev-gateway"))
        self.assertEqual(self.submit(did, key, 1, 1).result, R.TELEMETRY_RESULT_ACCEPTED)
        hits = self.wait_entry(
            lambda e: (e.action == A.AUDIT_ACTION_AUTHZ_DENIAL
                       and e.principal_name == "dev-gateway"
                       and e.target == "/warden.v1.Telemetry/Submit"), FLUSH_WAIT_S)
        self.assertEqual(hits[0].outcome, O.AUDIT_OUTCOME_DENIED)
        self.assertGreaterEqual(hits[0].count, 1)
        self.assertEqual(hits[0].detail, "aggregated by n1")

    def test_wrong_role_denial_is_aggregated(self):
        path = "/warden.v1.Control/RotateCommandKey"
        for _ in range(5):
            self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.call, "auditor",
                                path, ctl.RotateCommandKeyRequest(key_id="nope"))
        hits = self.wait_entry(
            lambda e: (e.action == A.AUDIT_ACTION_AUTHZ_DENIAL
                       and e.principal_name == "dev-auditor" and e.target == path),
            FLUSH_WAIT_S)
        # 5 refusals, 1 or 2 entries (a flush may fall between them).
        self.assertEqual(sum(e.count for e in hits), 5)
        self.assertLessEqual(len(hits), 2)
        self.assertEqual(hits[0].principal_role, 8)  # WROLE_AUDITOR

    def test_issue_command_and_verify(self):
        key = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = self.enroll(key)
        r = self.call("operator", "/warden.v1.Control/IssueCommand",
                      ctl.IssueCommandRequest(device_id=did, payload=b"\x01reboot"))
        self.assertEqual(r.seq, 1)
        self.assertEqual(r.key_epoch, 1)
        k = self.call("gateway", "/warden.v1.Control/GetCommandKey",
                      ctl.GetCommandKeyRequest(key_id=r.key_id))
        args = ["verify-command", "--envelope-hex", r.envelope.hex(),
                "--signature-hex", r.signature.hex(), "--pubkey-hex", k.public_key.hex(),
                "--device", did, "--key-epoch", "1"]
        self.ctl(*args, "--last-seq", "0", check=0)
        self.ctl(*args, "--last-seq", "1", check=1)       # replay
        self.ctl(*args[:-4], "--device", did + "x", "--key-epoch", "1",
                 "--last-seq", "0", check=1)              # wrong device
        r2 = self.call("operator", "/warden.v1.Control/IssueCommand",
                       ctl.IssueCommandRequest(device_id=did, payload=b"\x02"))
        self.assertEqual(r2.seq, 2)
        issued = [e for e in self.entries_for(did) if e.action == A.AUDIT_ACTION_COMMAND_ISSUE]
        self.assertEqual(len(issued), 2)

    def test_audit_head_read_tail_export(self):
        head = self.call("auditor", "/warden.v1.Audit/Head", aud.AuditHeadRequest())
        es = self.ledger()
        self.assertGreaterEqual(head.seq, 1)
        self.assertEqual(es[head.seq - 1].entry_hash, head.hash)
        self.assertEqual([e.seq for e in es], list(range(1, len(es) + 1)))
        # Serializable Read on request metadata: same entries here (one node).
        r = self.call("auditor", "/warden.v1.Audit/Read", aud.ReadAuditRequest(from_seq=1),
                      metadata=(("warden-consistency", "serializable"),))
        self.assertEqual(r.entries[0], es[0])
        # Operators may not read the ledger.
        self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.call, "operator",
                            "/warden.v1.Audit/Head", aud.AuditHeadRequest())
        # Tail from seq 1: the existing entries, then one committed later.
        ch = self.srv.channel("auditor")
        tail = ch.unary_stream("/warden.v1.Audit/Tail",
                               request_serializer=aud.TailAuditRequest.SerializeToString,
                               response_deserializer=aud.AuditEntry.FromString)
        stream = tail(aud.TailAuditRequest(from_seq=1), timeout=TAIL_WAIT_S + 5)
        got = []
        done = threading.Event()

        def reader():
            try:
                for e in stream:
                    got.append(e)
                    if e.target.startswith("tail-"):
                        done.set()
                        return
            except grpc.RpcError:
                pass
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        key = Key(inv.KEY_ALGORITHM_ED25519, self.keydir)
        did = wt.uid("tail")
        self.call("admin", "/warden.v1.Inventory/EnrollDevice", inv.EnrollDeviceRequest(
            device_id=did, key_algorithm=key.alg, public_key=key.public,
            attestation_digest=wt.digest32(did), gateway_id="dev-gateway"))
        self.assertTrue(done.wait(TAIL_WAIT_S), "tail did not deliver the new entry")
        stream.cancel()
        ch.close()
        self.assertEqual([e.seq for e in got], list(range(1, len(got) + 1)))
        self.assertEqual(got[-1].target, did)
        self.assertEqual(got[:len(es)], es)
        # Export, then verify offline.
        f = os.path.join(self.srv.tmp, "audit.export")
        self.ctl("--role", "auditor", "audit", "export", f, check=0)
        self.ctl("audit", "verify", f, check=0)


if __name__ == "__main__":
    wt.main()

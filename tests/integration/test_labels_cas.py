"""Issue 7: Inventory/UpdateDeviceLabels, the version-checked update the
Jepsen `register` workload is built on, end to end through one
`wardend --dev` with python3-grpcio.

What it shows:
  - CAS success: expected_updated_index = the device's updated_index; the
    answer carries the new labels and a higher updated_index (the
    command's log index), which GetDevice (linearizable) returns too;
  - a stale expected version is FAILED_PRECONDITION "version mismatch:
    have N, expected M" and changes nothing; an unknown device NOT_FOUND; a
    gateway or auditor PERMISSION_DENIED; labels over enroll's bounds
    INVALID_ARGUMENT;
  - expected 0 is an unconditional write;
  - 8 threads racing CAS on one device, round after round from the same
    version: exactly one wins per version, the losers get
    FAILED_PRECONDITION, and the winners' versions form one chain;
  - the audit ledger has one AUDIT_ACTION_LABELS OK entry per success and
    a REJECTED one per mismatch;
  - `wardenctl device labels ID k=v... [--expected-version N]` round trip,
    and its exit code on a mismatch.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
import grpc  # noqa: E402

RPC_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 30.0
# Concurrent CAS writers and rounds (each round: all threads race from the
# same version). Bounded: 8 x 10 proposals.
THREADS = 8
ROUNDS = 10
FP = grpc.StatusCode.FAILED_PRECONDITION


def _load(rel):
    src = os.path.join(wt.SRC, "proto", rel)
    out = os.path.join(wt.PY_OUT, rel[:-len(".proto")] + "_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + wt.PY_OUT,
                        "-I" + os.path.join(wt.SRC, "proto"), src],
                       check=True, timeout=wt.TOOL_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location(
        "labels_pb_" + os.path.basename(out)[:-3], out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


inv = wt.inv_pb2
aud = _load("warden/v1/audit.proto")

METHODS = {
    "/warden.v1.Inventory/EnrollDevice": (inv.EnrollDeviceRequest, inv.EnrollDeviceResponse),
    "/warden.v1.Inventory/GetDevice": (inv.GetDeviceRequest, inv.GetDeviceResponse),
    "/warden.v1.Inventory/UpdateDeviceLabels":
        (inv.UpdateDeviceLabelsRequest, inv.UpdateDeviceLabelsResponse),
    "/warden.v1.Audit/Read": (aud.ReadAuditRequest, aud.ReadAuditResponse),
}


def labels_of(dev):
    return {l.key: l.value for l in dev.labels}


class LabelsCasTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = wt.start_server(name="labels-cas")
        cls.chans = {}
        cls.lock = threading.Lock()
        cls.pub = wt.gen_ed25519_pub()

    @classmethod
    def tearDownClass(cls):
        for ch in cls.chans.values():
            ch.close()
        cls.srv.stop()

    # -- helpers --
    def chan(self, role):
        with self.lock:
            ch = self.chans.get(role)
            if ch is None:
                ch = self.chans[role] = self.srv.channel(role)
            return ch

    def call(self, role, path, req):
        rq, rs = METHODS[path]
        fn = self.chan(role).unary_unary(path, request_serializer=rq.SerializeToString,
                                         response_deserializer=rs.FromString)
        return fn(req, timeout=RPC_TIMEOUT_S)

    def enroll(self):
        did = wt.uid("lbl")
        r = self.call("admin", "/warden.v1.Inventory/EnrollDevice", inv.EnrollDeviceRequest(
            device_id=did, key_algorithm=inv.KEY_ALGORITHM_ED25519, public_key=self.pub,
            attestation_digest=wt.digest32(did), gateway_id="dev-gateway",
            labels=[inv.Label(key="site", value="plant-7")]))
        return did, r.device.updated_index

    def update(self, did, kv, expected=0, role="operator", key=""):
        return self.call(role, "/warden.v1.Inventory/UpdateDeviceLabels",
                         inv.UpdateDeviceLabelsRequest(
                             device_id=did, expected_updated_index=expected,
                             idempotency_key=key,
                             labels=[inv.Label(key=k, value=v) for k, v in kv]))

    def get(self, did):
        return self.call("auditor", "/warden.v1.Inventory/GetDevice",
                         inv.GetDeviceRequest(device_id=did)).device

    def ledger_for(self, target):
        out, from_seq = [], 1
        while True:
            r = self.call("auditor", "/warden.v1.Audit/Read",
                          aud.ReadAuditRequest(from_seq=from_seq, max_entries=1000))
            out.extend(e for e in r.entries if e.target == target)
            if not r.entries or r.next_seq > r.head_seq:
                return out
            from_seq = r.next_seq

    def ctl(self, *args):
        cmd = [wt.WARDENCTL, "--endpoint", self.srv.addr, "--dev-certs", self.srv.certs,
               "--role", "operator", *args]
        return subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)

    # -- tests --
    def test_cas_success_mismatch_unconditional(self):
        did, v0 = self.enroll()
        r = self.update(did, [("site", "plant-8"), ("line", "3")], expected=v0)
        v1 = r.device.updated_index
        self.assertGreater(v1, v0)
        self.assertEqual(labels_of(r.device), {"site": "plant-8", "line": "3"})
        got = self.get(did)
        self.assertEqual(got.updated_index, v1)
        self.assertEqual(labels_of(got), {"site": "plant-8", "line": "3"})
        self.assertEqual(got.created_index, v0)

        ex = self.assertRpcError(FP, self.update, did, [("site", "x")], expected=v0)
        self.assertIn("version mismatch: have %d, expected %d" % (v1, v0), ex.details())
        self.assertEqual(self.get(did).updated_index, v1)

        r = self.update(did, [("site", "plant-9")], expected=0)  # unconditional
        self.assertGreater(r.device.updated_index, v1)
        self.assertEqual(labels_of(self.get(did)), {"site": "plant-9"})

        entries = self.ledger_for(did)
        lab = [e for e in entries if e.action == aud.AUDIT_ACTION_LABELS]
        self.assertEqual([e.outcome for e in lab],
                         [aud.AUDIT_OUTCOME_OK, aud.AUDIT_OUTCOME_REJECTED,
                          aud.AUDIT_OUTCOME_OK], lab)
        self.assertEqual(lab[0].principal_name, "dev-operator")
        self.assertIn("version %d -> %d" % (v0, v1), lab[0].detail)

    def test_refusals(self):
        did, v0 = self.enroll()
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.update,
                            wt.uid("missing"), [("a", "b")])
        self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.update, did,
                            [("a", "b")], role="gateway")
        self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED, self.update, did,
                            [("a", "b")], role="auditor")
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.update, did,
                            [("k%d" % i, "v") for i in range(17)])
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.update, did,
                            [("k", "1"), ("k", "2")])
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.update, did,
                            [("bad key", "v")])
        self.assertEqual(self.get(did).updated_index, v0)

    def test_concurrent_cas_one_winner_per_version(self):
        did, version = self.enroll()
        chain = [version]
        for rnd in range(ROUNDS):
            start = threading.Barrier(THREADS)
            results = [None] * THREADS

            def worker(i, expected=version, rnd=rnd):
                start.wait(timeout=RPC_TIMEOUT_S)
                try:
                    r = self.update(did, [("owner", "t%d-r%d" % (i, rnd))], expected=expected)
                    results[i] = ("ok", r.device.updated_index)
                except grpc.RpcError as ex:
                    results[i] = (ex.code(), ex.details())

            ts = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=3 * RPC_TIMEOUT_S)
            wins = [(i, r[1]) for i, r in enumerate(results) if r and r[0] == "ok"]
            losses = [r for r in results if r and r[0] == FP]
            self.assertEqual(len(wins), 1, "round %d from version %d: %r" % (rnd, version, results))
            self.assertEqual(len(losses), THREADS - 1, results)
            for _, details in losses:
                self.assertIn("expected %d" % version, details)
            winner, new_version = wins[0]
            self.assertGreater(new_version, version)
            dev = self.get(did)
            self.assertEqual(dev.updated_index, new_version)
            self.assertEqual(labels_of(dev), {"owner": "t%d-r%d" % (winner, rnd)})
            version = new_version
            chain.append(version)
        oks = [e for e in self.ledger_for(did)
               if e.action == aud.AUDIT_ACTION_LABELS and e.outcome == aud.AUDIT_OUTCOME_OK]
        self.assertEqual([e.raft_index for e in oks], chain[1:])

    def test_wardenctl_device_labels(self):
        did, v0 = self.enroll()
        r = self.ctl("--json", "device", "labels", did, "site=plant-3", "zone=b",
                     "--expected-version", str(v0))
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        dev = json.loads(r.stdout)
        self.assertEqual({l["key"]: l["value"] for l in dev["labels"]},
                         {"site": "plant-3", "zone": "b"})
        v1 = dev["updated_index"]
        self.assertGreater(v1, v0)
        self.assertEqual(labels_of(self.get(did)), {"site": "plant-3", "zone": "b"})
        # stale version: FAILED_PRECONDITION (gRPC status 9 as the exit code)
        r = self.ctl("device", "labels", did, "site=x", "--expected-version", str(v0))
        self.assertEqual(r.returncode, 9, (r.stdout, r.stderr))
        self.assertIn(b"version mismatch", r.stderr)
        # no --expected-version: unconditional; no labels: clear
        r = self.ctl("--json", "device", "labels", did)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertEqual(json.loads(r.stdout)["labels"], [])
        # usage errors
        r = self.ctl("device", "labels", did, "novalue")
        self.assertEqual(r.returncode, 64, (r.stdout, r.stderr))  # usage
        r = self.ctl("device", "labels", did, "a=b", "--expected-version", "x")
        self.assertEqual(r.returncode, 64, (r.stdout, r.stderr))  # usage


if __name__ == "__main__":
    wt.main()

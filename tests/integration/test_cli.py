"""wardenctl against a real `wardend --dev`: round trips with --json (parsed
by json.loads), human output, and exit codes (= gRPC status; usage 64).

The JSON shape is checked loosely on key spelling (proto field names or
their lowerCamel JSON names are both fine) but exactly on values.
"""

import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
from wardentest import inv_pb2  # noqa: E402

# Bound on one wardenctl run (its own default RPC timeout is 10 s).
CLI_TIMEOUT_S = 30.0
EXIT_USAGE = 64


def find(obj, *names):
    """All values under any of `names` (snake_case or lowerCamel), depth-first."""
    alts = set()
    for n in names:
        alts.add(n)
        parts = n.split("_")
        alts.add(parts[0] + "".join(p.title() for p in parts[1:]))
    out = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in alts:
                    out.append(v)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(obj)
    return out


class CliTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = wt.start_server(name="cli")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def ctl(self, *args, role="admin", json_out=False, endpoint=None):
        cmd = [wt.WARDENCTL, "--endpoint", endpoint or self.server.addr,
               "--dev-certs", self.server.certs, "--role", role]
        if json_out:
            cmd.append("--json")
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
        r.cmdline = " ".join(cmd)
        return r

    def ok(self, r):
        self.assertEqual(r.returncode, 0, "%s\nstdout=%s\nstderr=%s"
                         % (getattr(r, "cmdline", r.args), r.stdout.decode(errors="replace"),
                            r.stderr.decode(errors="replace")))
        return r

    def code(self, r, want):
        self.assertEqual(r.returncode, want, "%s\nstdout=%s\nstderr=%s"
                         % (getattr(r, "cmdline", r.args), r.stdout.decode(errors="replace"),
                            r.stderr.decode(errors="replace")))

    def enroll_args(self, did, key_hex, alg="ed25519", gateway="gw-cli",
                    digest_hex=None, labels=("site=plant-1",)):
        a = ["device", "enroll", "--id", did, "--key-alg", alg,
             "--public-key-hex", key_hex,
             "--attestation-digest", digest_hex or wt.digest32(did).hex(),
             "--model", "plc-9000", "--firmware", "1.2.3", "--gateway", gateway]
        for l in labels:
            a += ["--label", l]
        return a

    def test_health(self):
        r = self.ok(self.ctl("health"))
        self.assertIn(b"SERVING", r.stdout)
        r = self.ok(self.ctl("health", json_out=True))
        j = json.loads(r.stdout)
        self.assertIn("SERVING", json.dumps(j))
        self.assertNotIn("NOT_SERVING", json.dumps(j))

    def test_enroll_get_list_json_round_trip(self):
        key = wt.gen_ed25519_pub()
        did = wt.uid("cli")
        r = self.ok(self.ctl(*self.enroll_args(did, key.hex(),
                                               labels=("site=plant-1", "line=7")),
                             json_out=True))
        j = json.loads(r.stdout)
        self.assertEqual(find(j, "device_id"), [did], j)
        self.assertEqual(find(j, "gateway_id"), ["gw-cli"], j)
        self.assertEqual(find(j, "firmware_version"), ["1.2.3"], j)
        self.assertEqual(find(j, "hardware_model"), ["plc-9000"], j)

        r = self.ok(self.ctl("device", "get", did, json_out=True))
        g = json.loads(r.stdout)
        self.assertEqual(find(g, "device_id"), [did], g)
        self.assertEqual(find(g, "enrolled_by"), ["dev-admin"], g)
        # Bytes fields: hex (the CLI's input form) or base64 (proto3 JSON).
        pk = find(g, "public_key")
        self.assertEqual(len(pk), 1, g)
        self.assertIn(pk[0], (key.hex(), key.hex().upper(), _b64(key)), g)
        fp = find(g, "key_fingerprint")
        if fp:
            d = hashlib.sha256(key).digest()
            self.assertIn(fp[0], (d.hex(), d.hex().upper(), _b64(d)), g)
        labels = json.dumps(find(g, "labels"))
        self.assertIn("plant-1", labels)
        self.assertIn("line", labels)

        # The same device via the grpc client: the CLI sent what we asked.
        with self.server.channel("admin") as ch:
            dev = wt.stub(ch, "/warden.v1.Inventory/GetDevice")(
                inv_pb2.GetDeviceRequest(device_id=did), timeout=10).device
        self.assertEqual(dev.public_key, key)
        self.assertEqual(dev.attestation_digest, wt.digest32(did))
        self.assertEqual(dev.key_algorithm, inv_pb2.KEY_ALGORITHM_ED25519)
        self.assertEqual(sorted((l.key, l.value) for l in dev.labels),
                         [("line", "7"), ("site", "plant-1")])

        r = self.ok(self.ctl("device", "list", "--gateway", "gw-cli", json_out=True))
        lj = json.loads(r.stdout)
        self.assertIn(did, find(lj, "device_id"), lj)

        # Human-readable forms mention the device too.
        self.assertIn(did.encode(), self.ok(self.ctl("device", "get", did)).stdout)
        self.assertIn(did.encode(), self.ok(self.ctl("device", "list")).stdout)

    def test_list_paging(self):
        gw = wt.uid("gw-clipg")
        ids = set()
        for i in range(5):
            did = wt.uid("clipg%d" % i)
            self.ok(self.ctl(*self.enroll_args(did, wt.gen_ed25519_pub().hex(), gateway=gw)))
            ids.add(did)
        r = self.ok(self.ctl("device", "list", "--gateway", gw, "--page-size", "2",
                             json_out=True))
        j = json.loads(r.stdout)
        got = set(find(j, "device_id"))
        # One page of 2 plus a token, or the CLI followed pages to the end.
        self.assertTrue(got <= ids and len(got) in (2, 5), j)
        if len(got) == 2:
            self.assertTrue(any(t for t in find(j, "next_page_token")), j)
        r = self.ok(self.ctl("device", "list", "--gateway", gw, "--page-size", "1000",
                             json_out=True))
        self.assertEqual(set(find(json.loads(r.stdout), "device_id")), ids)

    def test_p256_enroll(self):
        spki, point = wt.gen_p256_pub()
        did = wt.uid("clip256")
        self.ok(self.ctl(*self.enroll_args(did, point.hex(), alg="p256")))
        r = self.ok(self.ctl("device", "get", did, json_out=True))
        self.assertEqual(find(json.loads(r.stdout), "device_id"), [did])

    def test_exit_codes(self):
        # NOT_FOUND
        self.code(self.ctl("device", "get", wt.uid("nope")), 5)
        # ALREADY_EXISTS
        key = wt.gen_ed25519_pub().hex()
        did = wt.uid("clidup")
        self.ok(self.ctl(*self.enroll_args(did, key)))
        self.code(self.ctl(*self.enroll_args(did, key)), 6)
        # PERMISSION_DENIED
        self.code(self.ctl(*self.enroll_args(wt.uid("cliaud"), key), role="auditor"), 7)
        self.code(self.ctl("device", "get", did, role="rollout"), 7)
        # INVALID_ARGUMENT from the server (page size over the max is either
        # a usage error caught locally or the server's 3).
        r = self.ctl("device", "list", "--page-size", "1001")
        self.assertIn(r.returncode, (3, EXIT_USAGE), r.stderr)
        # UNAVAILABLE: nobody listens on this port.
        r = self.ctl("health", endpoint="127.0.0.1:%d" % wt.free_port())
        self.code(r, 14)
        # A nonzero exit says why on stderr, and prints nothing on stdout
        # that --json consumers could mistake for a result.
        r = self.ctl("device", "get", wt.uid("nope2"), json_out=True)
        self.code(r, 5)
        self.assertTrue(r.stderr.strip(), "no error message on stderr")

    def test_usage_errors(self):
        cases = [
            ("no command", []),
            ("unknown command", ["frobnicate"]),
            ("unknown flag", ["health", "--no-such-flag"]),
            ("device get without id", ["device", "get"]),
            ("bad hex", self.enroll_args(wt.uid("u"), "zz" * 32)),
            ("odd hex", self.enroll_args(wt.uid("u"), "abc")),
            ("bad alg", self.enroll_args(wt.uid("u"), "00" * 32, alg="rsa")),
            ("bad page size", ["device", "list", "--page-size", "many"]),
            ("bad label", self.enroll_args(wt.uid("u"), "00" * 32, labels=("=v",))),
        ]
        bad = []
        for name, args in cases:
            r = self.ctl(*args)
            if r.returncode != EXIT_USAGE:
                bad.append("%s: exit %d, stderr=%r" % (name, r.returncode, r.stderr[:200]))
        self.assertEqual(bad, [])
        # Missing certs for the role is a usage/config error, not a crash.
        r = subprocess.run([wt.WARDENCTL, "--endpoint", self.server.addr,
                            "--dev-certs", "/nonexistent-warden-certs", "--role", "admin",
                            "health"], capture_output=True, timeout=CLI_TIMEOUT_S)
        self.assertNotEqual(r.returncode, 0)
        self.assertLess(r.returncode, 128, "killed by a signal?")

    def test_untrusted_ca_fails(self):
        # wardenctl with the server's certs but a foreign CA refuses the server.
        d = os.path.join(self.server.tmp, "cli-foreign")
        cert, key, ca = wt.gen_foreign_client_cert(d)
        acert, akey = self.server.cert_paths("admin")
        r = subprocess.run([wt.WARDENCTL, "--endpoint", self.server.addr,
                            "--ca", ca, "--cert", acert, "--key", akey, "health"],
                           capture_output=True, timeout=CLI_TIMEOUT_S)
        self.code(r, 14)


def _b64(b):
    import base64
    return base64.b64encode(b).decode()


if __name__ == "__main__":
    wt.main()

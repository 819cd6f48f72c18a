"""workloads: what the clients do, what is read at the end, and the
checkers.  Each workload has

  setup(ctx)                    before the clients start (not in the history)
  gen(proc_state, rng)          -> (f, value): the next op of one process
  invoke(client, f, value)      -> (type, completion value, error keyword)
  final(ctx)                    after the heal and quiet period: final ops
                                (recorded) and per-node state (returned)
  check(ops, final_state)       -> {"valid?": bool, ...anomalies}

`ledger`, `counter-freshness` are available; `register` waits for a
version-checked update RPC (README, "register"); `grants` for the issue 5
server glue.
"""

import hashlib
import itertools
import struct
import threading
import time

from . import auditchain
from . import client as C
from .wire import inv_pb2, tlm_pb2, audit_pb2, grpc

SC = grpc.StatusCode
ACTIVE = inv_pb2.DEVICE_STATE_ACTIVE
QUARANTINED = inv_pb2.DEVICE_STATE_QUARANTINED

# Setup calls (enroll + activate) retried this many times each.
SETUP_TRIES = 20
# Ledger reads: page size (server cap) and a bound on pages per node.
AUDIT_PAGE = 1000
AUDIT_PAGES_MAX = 2000
# Final replays run on this many threads.
FINAL_THREADS = 8
# Anomalies listed per kind in results.edn (the count is always complete).
ANOMALIES_SHOWN = 20


def _ed25519():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization as ser
    k = Ed25519PrivateKey.generate()
    pub = k.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return k, pub


_PUB = []
_PUB_LOCK = threading.Lock()


def shared_pub():
    with _PUB_LOCK:
        if not _PUB:
            _PUB.append(_ed25519()[1])
        return _PUB[0]


def enroll_req(device_id, idem, pub=None, gateway="gw-0"):
    return inv_pb2.EnrollDeviceRequest(
        device_id=device_id, key_algorithm=inv_pb2.KEY_ALGORITHM_ED25519,
        public_key=pub or shared_pub(),
        attestation_digest=hashlib.sha256(device_id.encode()).digest(),
        hardware_model="plc-9000", firmware_version="1.0.0",
        labels=[inv_pb2.Label(key="site", value="jepsen")],
        gateway_id=gateway, idempotency_key=idem)


def _limited(lst):
    return lst[:ANOMALIES_SHOWN]


def _setup_call(cl, method, req, ok_codes=()):
    last = None
    for _ in range(SETUP_TRIES):
        o = cl.call(method, req, timeout=5.0, deadline_s=10.0)
        if o.type == "ok" or o.code in ok_codes:
            return o
        last = o
        time.sleep(0.2)
    raise RuntimeError("setup %s failed: %r" % (method, last))


def _domain_fail(o):
    """A server refusal (:fail) keyword or None."""
    return o.error


def read_ledger(db, node, meta=(("warden-consistency", "serializable"),)):
    """Every audit entry on one node (serializable: that node's own
    ledger), plus its Head. Raises grpc.RpcError."""
    from . import wire
    ch = db.channel(node.client)
    head = wire.stub(ch, "Head")(audit_pb2.AuditHeadRequest(), timeout=10.0)
    out = []
    seq = 1
    for _ in range(AUDIT_PAGES_MAX):
        r = wire.stub(ch, "Read")(audit_pb2.ReadAuditRequest(from_seq=seq, max_entries=AUDIT_PAGE),
                                  timeout=10.0, metadata=meta)
        out.extend(r.entries)
        if not r.entries or r.next_seq <= seq:
            break
        seq = r.next_seq
        if seq > head.seq:
            break
    return head, out


# ---------------------------------------------------------------- ledger
class Ledger:
    """Mixed mutations through Raft; every node's audit ledger is compared
    and verified at the end; every acknowledged mutation is in it exactly
    once, every indeterminate one at most once, every refused one never."""

    name = "ledger"

    def __init__(self, seed, opts):
        self.seed = seed
        self.lock = threading.Lock()
        self.n = itertools.count()
        self.enrolled = []            # device ids with an :ok enroll
        self.pending_retry = []       # (device, idem) whose enroll was :info
        self.opts = opts

    def setup(self, ctx):
        pass

    def _new_id(self):
        return next(self.n)

    def gen(self, proc, rng):
        with self.lock:
            r = rng.random()
            if self.pending_retry and r < 0.15:
                dev, idem = self.pending_retry.pop(rng.randrange(len(self.pending_retry)))
                return "enroll", {"device": dev, "idem": idem, "retry": True}
            if not self.enrolled or r < 0.55:
                k = self._new_id()
                dev = "jl-%d-%d" % (self.seed, k)
                return "enroll", {"device": dev, "idem": "ik-%d-%d" % (self.seed, k)}
            dev = rng.choice(self.enrolled[-200:])
            k = self._new_id()
            if r < 0.85:
                st = rng.choice(["ACTIVE", "QUARANTINED"])
                return "set-state", {"device": dev, "state": st,
                                     "token": "tok-%d-%d" % (self.seed, k),
                                     "idem": "is-%d-%d" % (self.seed, k)}
            return "rebind", {"device": dev, "gateway": "gw-%d" % rng.randrange(4),
                              "idem": "ir-%d-%d" % (self.seed, k)}

    def invoke(self, cl, f, v):
        if f == "enroll":
            o = cl.call("EnrollDevice", enroll_req(v["device"], v["idem"]))
        elif f == "set-state":
            o = cl.call("SetDeviceState", inv_pb2.SetDeviceStateRequest(
                device_id=v["device"], state=inv_pb2.DeviceState.Value("DEVICE_STATE_" + v["state"]),
                reason=v["token"], idempotency_key=v["idem"]))
        else:
            o = cl.call("RebindDevice", inv_pb2.RebindDeviceRequest(
                device_id=v["device"], gateway_id=v["gateway"], idempotency_key=v["idem"]))
        with self.lock:
            if f == "enroll":
                if o.type == "ok":
                    self.enrolled.append(v["device"])
                elif o.type == "info" and not v.get("retry"):
                    self.pending_retry.append((v["device"], v["idem"]))
        out = dict(v)
        if o.type == "ok" and f == "enroll":
            out["created-index"] = o.resp.device.created_index
        return o.type, out, o.error

    def final(self, ctx):
        """Each member's whole ledger (serializable) and head."""
        state = {}
        for i in sorted(ctx.db.members):
            nd = ctx.db.nodes[i]
            try:
                head, entries = read_ledger(ctx.db, nd)
                state[i] = (head, entries)
            except grpc.RpcError as ex:
                state[i] = ex
        return state

    def check(self, ops, state):
        anomalies = {}

        def add(kind, x):
            anomalies.setdefault(kind, []).append(x)
        ledgers = {}
        for i, st in sorted(state.items()):
            if isinstance(st, Exception):
                add("unreadable-node", {"node": i, "error": str(st.code())})
                continue
            head, entries = st
            bad = auditchain.verify(entries)
            if bad:
                add("chain-broken", {"node": i, "problems": bad})
            if entries and (entries[-1].seq != head.seq or bytes(entries[-1].entry_hash) != bytes(head.hash)):
                add("head-mismatch", {"node": i, "head-seq": head.seq,
                                      "last-read-seq": entries[-1].seq})
            ledgers[i] = (head, entries)
        if not ledgers:
            return {"valid?": False, "anomalies": anomalies, "error": "no ledger read"}
        # Identical up to the common length (every node converged first, so
        # the lengths should be equal too; a shorter one is reported).
        common = min(len(e) for _, e in ledgers.values())
        longest_id = max(ledgers, key=lambda i: len(ledgers[i][1]))
        ref = ledgers[longest_id][1]
        for i, (head, entries) in ledgers.items():
            for k in range(common):
                if bytes(entries[k].entry_hash) != bytes(ref[k].entry_hash):
                    add("ledger-divergence", {"node": i, "vs-node": longest_id,
                                              "seq": entries[k].seq})
                    break
        lens = {i: len(e) for i, (_, e) in ledgers.items()}
        applied = {i: h.applied_index for i, (h, _) in ledgers.items()}
        if len(set(lens.values())) != 1:
            add("ledger-length-differs", {"lengths": lens, "applied": applied})
        # Exactly-once, from the longest ledger.
        enroll_ok = {}
        state_ok = {}
        for e in ref:
            if e.outcome != audit_pb2.AUDIT_OUTCOME_OK:
                continue
            if e.action == audit_pb2.AUDIT_ACTION_ENROLL:
                enroll_ok[e.target] = enroll_ok.get(e.target, 0) + 1
            elif e.action == audit_pb2.AUDIT_ACTION_STATE_CHANGE:
                tok = e.detail.rsplit(": ", 1)[-1]
                state_ok[tok] = state_ok.get(tok, 0) + 1
        # Per logical mutation: the completions of its attempts.
        muts = {}
        for o in ops:
            if o["type"] in ("invoke",) or not isinstance(o["process"], int):
                continue
            v = o["value"]
            if o["f"] == "enroll":
                key = ("enroll", v["device"])
            elif o["f"] == "set-state":
                key = ("set-state", v["token"])
            else:
                continue
            muts.setdefault(key, []).append(o["type"])
            if o["type"] == "fail" and o.get("error") == "already-exists" and v.get("retry"):
                add("idempotency-lost", {"device": v["device"], "index": o["index"]})
        counts = {"ok": 0, "info": 0, "fail": 0}
        for (kind, ident), types in muts.items():
            n = (enroll_ok if kind == "enroll" else state_ok).get(ident, 0)
            tag = "ok" if "ok" in types else ("info" if "info" in types else "fail")
            counts[tag] += 1
            if n > 1:
                add("duplicated", {"f": kind, "id": ident, "times": n, "completions": types})
            elif tag == "ok" and n == 0:
                add("lost", {"f": kind, "id": ident, "completions": types})
            elif tag == "fail" and n == 1:
                add("failed-but-applied", {"f": kind, "id": ident, "completions": types})
        known = {i for k, i in muts if k == "enroll"}
        for dev, n in enroll_ok.items():
            if dev.startswith("jl-") and dev not in known:
                add("unexpected", {"f": "enroll", "id": dev})
        out = {"valid?": not anomalies,
               "ledger-lengths": lens, "applied-index": applied,
               "mutations": counts, "enroll-ok-entries": len(enroll_ok),
               "state-ok-entries": len(state_ok),
               "anomaly-counts": {k: len(v) for k, v in anomalies.items()},
               "anomalies": {k: _limited(v) for k, v in anomalies.items()}}
        return out


# ------------------------------------------------------- counter-freshness
def tlm_message(device_id, key_epoch, counter, digest):
    d = device_id.encode()
    return b"warden.telemetry.v1" + struct.pack(">I", len(d)) + d + \
        struct.pack(">QQ", key_epoch, counter) + digest


class Freshness:
    """Signed telemetry with overlapping, replayed and reordered counters.
    Every op's value is [device counter]; a completion adds the verdict."""

    name = "counter-freshness"
    DEVICES = 6
    # Replays and reorders stay inside the server's 1024-counter window so
    # a replay's right answer is REPLAY (TOO_OLD is also accepted).
    SPAN = 700

    def __init__(self, seed, opts):
        self.seed = seed
        self.opts = opts
        self.lock = threading.Lock()
        self.devs = []                # [(id, key, epoch)]
        self.next = {}                # device -> next fresh counter
        self.seen = {}                # device -> list of submitted counters

    def setup(self, ctx):
        cl = C.Client(ctx.db, ctx.rng)
        for k in range(self.DEVICES):
            dev = "jf-%d-%d" % (self.seed, k)
            key, pub = _ed25519()
            o = _setup_call(cl, "EnrollDevice", enroll_req(dev, "ikf-%d-%d" % (self.seed, k), pub))
            epoch = o.resp.device.key_epoch
            _setup_call(cl, "SetDeviceState", inv_pb2.SetDeviceStateRequest(
                device_id=dev, state=ACTIVE, reason="jepsen setup",
                idempotency_key="isf-%d-%d" % (self.seed, k)))
            self.devs.append((dev, key, epoch))
            self.next[dev] = 1
            self.seen[dev] = []

    def gen(self, proc, rng):
        with self.lock:
            dev, _, _ = rng.choice(self.devs)
            nxt = self.next[dev]
            seen = self.seen[dev]
            r = rng.random()
            if r < 0.55 or not seen:
                c = nxt
                self.next[dev] = nxt + 1
                kind = "fresh"
            elif r < 0.70:
                # Ahead of the allocator: reordered; the allocator hands the
                # same counter out again later (overlap).
                c = nxt + rng.randrange(1, 16)
                kind = "ahead"
            elif r < 0.85:
                c = rng.choice(seen[-8:])
                kind = "overlap"
            else:
                lo = max(0, len(seen) - self.SPAN // 2)
                c = rng.choice(seen[lo:])
                kind = "replay"
            if c < nxt - self.SPAN:
                c = nxt
                self.next[dev] = nxt + 1
            seen.append(c)
            if len(seen) > 4 * self.SPAN:
                del seen[:len(seen) - 2 * self.SPAN]
            return "submit", [dev, c, kind]

    def _req(self, dev, c):
        _, key, epoch = next(d for d in self.devs if d[0] == dev)
        payload = b"jepsen %s %d" % (dev.encode(), c)
        digest = hashlib.sha256(payload).digest()
        sig = key.sign(tlm_message(dev, epoch, c, digest))
        return tlm_pb2.SubmitTelemetryRequest(device_id=dev, key_epoch=epoch, counter=c,
                                              payload_digest=digest, signature=sig,
                                              payload=payload)

    def invoke(self, cl, f, v):
        dev, c, kind = v
        o = cl.call("Submit", self._req(dev, c))
        if o.type == "ok":
            res = tlm_pb2.TelemetryResult.Name(o.resp.result).replace("TELEMETRY_RESULT_", "")
            return "ok", [dev, c, kind, res.lower().replace("_", "-")], None
        return o.type, [dev, c, kind, None], o.error

    def final(self, ctx):
        """Replay every :ok-accepted counter that is still inside its
        device's window: each must come back REPLAY (or TOO_OLD)."""
        acc = {}
        for o in ctx.rec.ops:
            if o["f"] == "submit" and o["type"] == "ok" and o["value"][3] == "accepted":
                acc.setdefault(o["value"][0], set()).add(o["value"][1])
        todo = []
        for dev in sorted(acc):
            hi = max(acc[dev])
            todo += [(dev, c) for c in sorted(acc[dev]) if c > hi - self.SPAN]
        ctx.rng.shuffle(todo)
        todo = todo[:ctx.final_max]
        nthreads = FINAL_THREADS

        def replayer(k):
            cl = C.Client(ctx.db, ctx.rng.__class__(k))
            proc = ctx.final_process + k
            for dev, c in todo[k::nthreads]:
                v = [dev, c, "final"]
                ctx.rec.add(proc, "invoke", "submit", v)
                typ, out, err = self.invoke(cl, "submit", v)
                ctx.rec.add(proc, typ, "submit", out, **({"error": err} if err else {}))
                if typ == "info":
                    proc += nthreads
        ts = [threading.Thread(target=replayer, args=(k,), daemon=True) for k in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=C.OP_DEADLINE_S * (len(todo) // nthreads + 2))
        n = len(todo)
        return {"final-replays": n}

    def check(self, ops, state):
        anomalies = {}

        def add(kind, x):
            anomalies.setdefault(kind, []).append(x)
        by = {}
        inv = {}
        for o in ops:
            if o["f"] != "submit" or not isinstance(o["process"], int):
                continue
            if o["type"] == "invoke":
                inv[o["process"]] = o
                continue
            i = inv.pop(o["process"], None)
            if i is None:
                continue
            key = (o["value"][0], o["value"][1])
            by.setdefault(key, []).append((i["time"], o["time"], o["type"],
                                           o["value"][3] if o["type"] == "ok" else None,
                                           o["index"]))
        for p, i in inv.items():   # never completed: indeterminate
            key = (i["value"][0], i["value"][1])
            by.setdefault(key, []).append((i["time"], float("inf"), "info", None, i["index"]))
        stats = {}
        for key, lst in by.items():
            for t0, t1, typ, res, idx in lst:
                k = res if typ == "ok" else typ
                stats[k] = stats.get(k, 0) + 1
            accepted = [x for x in lst if x[3] == "accepted"]
            if len(accepted) > 1:
                add("accepted-twice", {"device": key[0], "counter": key[1],
                                       "indexes": [x[4] for x in accepted]})
            for r in (x for x in lst if x[3] == "replay"):
                # A REPLAY needs an acceptance: an :ok ACCEPTED or an :info
                # attempt of the same counter invoked before it completed.
                if not any(x is not r and x[0] < r[1] and (x[3] == "accepted" or x[2] == "info")
                           for x in lst):
                    add("unexplained-replay", {"device": key[0], "counter": key[1],
                                               "index": r[4]})
                # ...and no later attempt may be ACCEPTED again.
                for a in accepted:
                    if a[0] > r[1]:
                        add("accepted-after-replay", {"device": key[0], "counter": key[1],
                                                      "replay": r[4], "accepted": a[4]})
            for a in accepted:
                for x in lst:
                    if x[0] > a[1] and x[2] == "ok" and x[3] not in ("replay", "too-old"):
                        add("acceptance-lost", {"device": key[0], "counter": key[1],
                                                "accepted": a[4], "later": x[4], "result": x[3]})
        return {"valid?": not anomalies, "results": stats, "counters": len(by),
                "anomaly-counts": {k: len(v) for k, v in anomalies.items()},
                "anomalies": {k: _limited(v) for k, v in anomalies.items()}}


# ---------------------------------------------------------------- register
class RegisterBackend:
    """The interface the register workload needs from warden: a per-key
    register with a version-checked update.  Not implementable yet: no RPC
    takes an expected-version precondition (README, "register")."""

    def read(self, cl, key):            # -> (type, value)
        raise NotImplementedError

    def write(self, cl, key, value):    # -> type
        raise NotImplementedError

    def cas(self, cl, key, old, new):   # -> type (:fail on precondition)
        raise NotImplementedError


WORKLOADS = {"ledger": Ledger, "counter-freshness": Freshness}
from . import wl_access  # noqa: E402  (imports this module's helpers)
WORKLOADS["grants"] = wl_access.Grants
from . import wl_rollout  # noqa: E402
WORKLOADS["rollout"] = wl_rollout.Rollout
from . import wl_register, wire as _wire  # noqa: E402
if _wire.HAVE_UPDATE_LABELS:
    WORKLOADS["register"] = wl_register.Register
PENDING = {} if _wire.HAVE_UPDATE_LABELS else {
    "register": "needs a version-checked update RPC, e.g. Inventory/UpdateDeviceLabels"
                "{device_id, labels, expected_updated_index} -> FAILED_PRECONDITION on "
                "mismatch (see tests/jepsen/README.md)",
}

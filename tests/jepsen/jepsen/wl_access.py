"""The `grants` workload (issue 5 access service) and its checker.

Clients (one Jepsen process each) concurrently:
  request   RequestAccess by a requester (operator certs jr-1, jr-2 minted
            for the run): DIAGNOSTICS (policy: 1 approval) or MAINTENANCE
            (policy: 2 approvals, admin and operator)
  approve   ApproveAccess by a reviewer the policy allows (admin, operator)
  check     CheckAccess as the gateway, a unique idempotency key; after an
            :info, 15% of checks retry an ambiguous one with the same key
  revoke    RevokeGrant (admin or operator)
  lock      Lock{DEVICE} (operator); unlock: Unlock of one of them

Checker (check_grants, pure: a history in, a verdict out).  Times are the
recorder's monotonic ns; "after X's ack" means invoked after X's :ok
completion (real-time order), so X certainly committed first.
  allow-after-revoke       ALLOW of grant g by a check invoked after an :ok
                           RevokeGrant(g) completed
  allow-after-lock-revoked ALLOW of g by a check invoked after an :ok Lock of
                           one of g's devices completed, g's approval having
                           completed before that Lock was invoked (the lock
                           revoked g; it stays revoked after Unlock)
  allow-while-locked       ALLOW on device d by a check invoked after an :ok
                           Lock(d) and completed before any Unlock of it was
                           invoked
  over-consumed            more distinct ALLOWed keys for g than max_uses
  use-counted-twice        two ALLOWs of g (different keys) report the same
                           remaining_uses: one use served two sessions
  remaining-out-of-range   remaining_uses >= max_uses after a use
  idempotency-mismatch     one idempotency key, two :ok answers that differ
  allow-wrong-grant        ALLOW through a known grant of another principal
                           or not covering the device
  exhausted-early          USES_EXHAUSTED for g although the uses that could
                           have been consumed before the check completed (the
                           :ok ALLOWs of g plus every :info check of g's
                           principal on its devices: the upper bound) are
                           fewer than max_uses
"""

import bisect
import threading

from . import client as C
from .wire import acc_pb2, inv_pb2
from .workloads import _setup_call, _limited, enroll_req

ACTIVE = inv_pb2.DEVICE_STATE_ACTIVE
PU = acc_pb2.AccessPurpose
DIAG = PU.ACCESS_PURPOSE_DIAGNOSTICS
MAINT = PU.ACCESS_PURPOSE_MAINTENANCE
HUMANS = 1 | 2 | 8          # WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR
REVIEWERS = 1 | 2           # admin | operator
GATEWAY = "gateway"         # principal of the generated gateway cert
# Requesters: operator certs minted for the run.  A principal may hold 64
# open requests plus grants kept (dead grants are kept 24 h), so a requester
# refused with RESOURCE_EXHAUSTED is retired and a fresh one minted.
REQUESTERS_AT_ONCE = 4
INF = float("inf")


def _rule(purpose, m):
    return acc_pb2.AccessPurposeRule(purpose=purpose, approvals_required=m,
                                     reviewer_roles=REVIEWERS, max_duration_ms=3600000,
                                     max_uses=1000, pending_ttl_ms=3600000)


def _name(enum, v, prefix):
    return enum.Name(v).replace(prefix, "").lower().replace("_", "-")


class Grants:
    name = "grants"
    DEVICES = 12
    # Grants last long enough to be revoked or exhausted, short enough that
    # a requester's live set (64 per principal) turns over.
    DURATION_MS = 30000
    LIVE_GRANTS = 40        # grants kept as check/revoke targets
    PENDING_MAX = 12        # open requests before the generator only approves
    TARGETS_MAX = 12        # usable grants before the generator stops requesting
    LOCKS_MAX = 2           # device locks held at once (then: unlock)

    def __init__(self, seed, opts):
        self.seed = seed
        self.opts = opts
        self.lock = threading.Lock()
        self.n = 0
        self.devices = []
        self.pending = []          # [rid, purpose, requester, reviewers left]
        self.grants = []           # [(gid, principal, devices)]
        self.locks = []            # [(lock id, device)]
        self.info_checks = []      # check values whose outcome is unknown
        self.requesters = []
        self.retiring = set()      # requesters being replaced (quota exhausted)
        self.n_req = 0
        self.lock_retry = []       # :info Lock values, retried with the same key

    def _new_requester(self):
        with self.lock:
            self.n_req += 1
            name = "jr-%d" % self.n_req
        self.db.mint_cert("operator", name)
        with self.lock:
            self.requesters.append(name)

    def _k(self, tag):
        self.n += 1
        return "%s-%d-%d" % (tag, self.seed, self.n)

    def setup(self, ctx):
        self.db = ctx.db
        for _ in range(REQUESTERS_AT_ONCE):
            self._new_requester()
        cl = C.Client(ctx.db, ctx.rng)
        op = C.Client(ctx.db, ctx.rng, "operator")
        _setup_call(cl, "SetAccessPolicy", acc_pb2.SetAccessPolicyRequest(
            rules=[_rule(DIAG, 1), _rule(MAINT, 2)], lock_view_max_lag=1000000,
            idempotency_key="jg-policy-%d" % self.seed))
        for k in range(self.DEVICES):
            dev = "jg-%d-%d" % (self.seed, k)
            _setup_call(cl, "EnrollDevice", enroll_req(dev, "ikg-%d-%d" % (self.seed, k),
                                                       gateway=GATEWAY))
            _setup_call(op, "SetDeviceState", inv_pb2.SetDeviceStateRequest(
                device_id=dev, state=ACTIVE, reason="jepsen setup",
                idempotency_key="isg-%d-%d" % (self.seed, k)))
            self.devices.append(dev)

    # -- generator --
    def gen(self, proc, rng):
        with self.lock:
            r = rng.random()
            if self.info_checks and r < 0.06:
                v = dict(self.info_checks.pop(rng.randrange(len(self.info_checks))))
                v["retry"] = True
                return "check", v
            if r < 0.50 and (self.grants or r < 0.15):
                if self.grants and rng.random() < 0.85:
                    _, principal, devs = rng.choice(self.grants)
                    dev = rng.choice(devs)
                else:
                    principal, dev = rng.choice(self.requesters), rng.choice(self.devices)
                return "check", {"principal": principal, "device": dev, "key": self._k("kc")}
            if self.pending and (r < 0.70 or len(self.pending) >= self.PENDING_MAX):
                p = rng.choice(self.pending)
                who = rng.choice(sorted(p[3]))
                return "approve", {"request": p[0], "reviewer": who, "key": self._k("ka")}
            if (r < 0.82 or not self.grants) and len(self.grants) < self.TARGETS_MAX:
                purpose = "maintenance" if rng.random() < 0.3 else "diagnostics"
                devs = sorted(rng.sample(self.devices, rng.choice((1, 1, 2))))
                return "request", {"requester": rng.choice(self.requesters), "devices": devs,
                                   "purpose": purpose, "max": rng.randint(1, 4),
                                   "key": self._k("kr")}
            if r < 0.91:
                gid = rng.choice(self.grants)[0]
                return "revoke", {"grant": gid, "by": rng.choice(("admin", "operator")),
                                  "key": self._k("kv")}
            if self.lock_retry and r < 0.955:
                return "lock", dict(self.lock_retry.pop(), retry=True)
            if len(self.locks) < self.LOCKS_MAX and (r < 0.955 or not self.locks):
                return "lock", {"device": rng.choice(self.devices), "key": self._k("kl")}
            lid, dev = self.locks.pop(rng.randrange(len(self.locks)))
            return "unlock", {"lock": lid, "device": dev, "key": self._k("ku")}

    # -- client --
    def invoke(self, cl, f, v):
        out = dict(v)
        if f == "request":
            o = cl.call("RequestAccess", acc_pb2.RequestAccessRequest(
                device_ids=v["devices"], purpose=MAINT if v["purpose"] == "maintenance" else DIAG,
                reason="jepsen", scope=acc_pb2.AccessScope(protocols=["ssh"]),
                duration_ms=self.DURATION_MS, max_sessions=v["max"],
                idempotency_key=v["key"]), role=v["requester"])
            if o.type == "fail" and o.error == "resource-exhausted":
                # Mint the successor before retiring the old requester: other
                # threads draw from self.requesters and it must never be empty.
                with self.lock:
                    retire = (v["requester"] in self.requesters
                              and v["requester"] not in self.retiring)
                    if retire:
                        self.retiring.add(v["requester"])
                if retire:
                    self._new_requester()
                    with self.lock:
                        self.requesters.remove(v["requester"])
            if o.type == "ok":
                out["request"] = o.resp.request.request_id
                with self.lock:
                    self.pending.append([out["request"], v["purpose"], v["requester"],
                                         {"admin", "operator"}])
        elif f == "approve":
            o = cl.call("ApproveAccess", acc_pb2.ReviewAccessRequest(
                request_id=v["request"], comment="jepsen", idempotency_key=v["key"]),
                role=v["reviewer"])
            with self.lock:
                p = next((p for p in self.pending if p[0] == v["request"]), None)
                if p is not None and o.type in ("ok", "fail"):
                    p[3].discard(v["reviewer"])
                    if not p[3] or (o.type == "ok" and o.resp.HasField("grant")):
                        self.pending.remove(p)
            if o.type == "ok":
                rq = o.resp.request
                out["state"] = _name(acc_pb2.AccessRequestState, rq.state,
                                     "ACCESS_REQUEST_STATE_")
                if o.resp.HasField("grant"):
                    g = o.resp.grant
                    out.update({"grant": g.grant_id, "principal": g.principal,
                                "devices": list(g.device_ids), "max": g.max_uses})
                    with self.lock:
                        self.grants.append((g.grant_id, g.principal, list(g.device_ids)))
                        del self.grants[:-self.LIVE_GRANTS]
        elif f == "check":
            o = cl.call("CheckAccess", acc_pb2.CheckAccessRequest(
                principal=v["principal"], device_id=v["device"], protocol="ssh", port=22,
                lock_revision=0, idempotency_key=v["key"]), role="gateway")
            if o.type == "ok":
                r = o.resp
                out.update({"decision": _name(acc_pb2.AccessDecision, r.decision,
                                              "ACCESS_DECISION_"),
                            "grant": r.grant_id, "remaining": r.remaining_uses,
                            "revision": r.revision})
                if r.decision != acc_pb2.ACCESS_DECISION_ALLOW:
                    out["reason"] = _name(acc_pb2.AccessDenyReason, r.reason,
                                          "ACCESS_DENY_REASON_")
                if r.lock_id:
                    out["lock"] = r.lock_id
                if out.get("reason") in ("uses-exhausted", "grant-revoked", "expired"):
                    with self.lock:
                        self.grants = [g for g in self.grants if g[0] != r.grant_id]
            elif o.type == "info":
                with self.lock:
                    self.info_checks.append({k: v[k] for k in ("principal", "device", "key")})
                    del self.info_checks[:-50]
        elif f == "revoke":
            o = cl.call("RevokeGrant", acc_pb2.RevokeGrantRequest(
                grant_id=v["grant"], reason="jepsen", idempotency_key=v["key"]), role=v["by"])
            if o.type in ("ok", "fail"):
                with self.lock:
                    self.grants = [g for g in self.grants if g[0] != v["grant"]]
        elif f == "lock":
            o = cl.call("Lock", acc_pb2.LockRequest(
                kind=acc_pb2.LOCK_TARGET_KIND_DEVICE, value=v["device"], reason="jepsen",
                idempotency_key=v["key"]), role="operator")
            if o.type == "ok":
                out["lock"] = o.resp.lock.lock_id
                out["revoked-now"] = o.resp.lock.revoked_now
                with self.lock:
                    self.locks.append((out["lock"], v["device"]))
            elif o.type == "info":
                # It may hold the device locked for good: the same key again
                # returns the stored lock (or takes it now), so it is tracked.
                with self.lock:
                    self.lock_retry.append({"device": v["device"], "key": v["key"]})
        elif f == "unlock":
            o = cl.call("Unlock", acc_pb2.UnlockRequest(
                lock_id=v["lock"], reason="jepsen", idempotency_key=v["key"]), role="operator")
            if o.type == "info":
                with self.lock:       # may not have happened: unlock again later
                    self.locks.append((v["lock"], v["device"]))
        else:
            raise ValueError(f)
        return o.type, out, o.error

    def final(self, ctx):
        """Every grant (dead ones are kept 24 h), read on the leader."""
        cl = C.Client(ctx.db, ctx.rng)
        out, tok = {}, ""
        for _ in range(1000):
            o = cl.call("ListGrants", acc_pb2.ListGrantsRequest(page_size=1000, page_token=tok),
                        timeout=10.0, deadline_s=30.0)
            if o.type != "ok":
                return {"error": "ListGrants: %s %s" % (o.type, o.error)}
            for g in o.resp.grants:
                out[g.grant_id] = {"principal": g.principal, "devices": list(g.device_ids),
                                   "max": g.max_uses, "left": g.uses_left,
                                   "state": _name(acc_pb2.AccessGrantState, g.state,
                                                  "ACCESS_GRANT_STATE_")}
            tok = o.resp.next_page_token
            if not tok:
                break
        return {"grants": out}

    def check(self, ops, state):
        return check_grants(ops, (state or {}).get("grants"),
                            (state or {}).get("error"))


# ---------------------------------------------------------------- checker
def pair(ops, fs=None):
    """Client ops as dicts {f, type, inv, cmp, v (completion value, or the
    invoke's), iv, index, cindex, error}; an invoke never completed is
    :info with cmp = inf."""
    out, open_ = [], {}
    for o in ops:
        if not isinstance(o["process"], int) or (fs and o["f"] not in fs):
            continue
        if o["type"] == "invoke":
            open_[o["process"]] = o
            continue
        i = open_.pop(o["process"], None)
        if i is None:
            continue
        out.append({"f": o["f"], "type": o["type"], "inv": i["time"], "cmp": o["time"],
                    "v": o["value"] if isinstance(o["value"], dict) else i["value"],
                    "iv": i["value"], "index": i["index"], "cindex": o["index"],
                    "error": o.get("error")})
    for p, i in open_.items():
        out.append({"f": i["f"], "type": "info", "inv": i["time"], "cmp": INF,
                    "v": i["value"], "iv": i["value"], "index": i["index"],
                    "cindex": None, "error": None})
    out.sort(key=lambda x: x["inv"])
    return out


def _where(x):
    return {"index": x["index"], "completion": x["cindex"]}


def _lock_index(locks, unlock_inv):
    """Per device: the definitely-locked windows (Lock ack .. first Unlock
    invoke) sorted by start with a prefix max of their ends, and the Locks
    sorted by invoke with a suffix min of their acks."""
    win, lk = {}, {}
    by_dev = {}
    for dev, lid, lo in locks:
        by_dev.setdefault(dev, []).append((lid, lo))
    for dev, ls in by_dev.items():
        ws = sorted(((lo["cmp"], unlock_inv.get(lid, INF), (lid, lo)) for lid, lo in ls),
                    key=lambda t: t[0])
        mx, best = [], (-1, None)
        for st, en, who in ws:
            if en > best[0]:
                best = (en, who)
            mx.append(best)
        win[dev] = {"start": [t[0] for t in ws], "maxend": mx}
        li = sorted(((lo["inv"], lo["cmp"], (lid, lo)) for lid, lo in ls), key=lambda t: t[0])
        mn, best = [None] * len(li), (INF, None)
        for k in range(len(li) - 1, -1, -1):
            if li[k][1] < best[0]:
                best = (li[k][1], li[k][2])
            mn[k] = best
        lk[dev] = {"inv": [t[0] for t in li], "minok": mn}
    return win, lk


def check_grants(ops, final=None, final_error=None):
    """final: {grant id: {principal devices max left state}} read after the
    run (ListGrants), or None."""
    anomalies = {}

    def add(kind, x):
        anomalies.setdefault(kind, []).append(x)
    P = pair(ops)
    grants = {}          # gid -> {principal, devices, max, ok (approve completion)}
    revoked = {}         # gid -> earliest :ok revoke completion (op)
    locks = []           # (device, lock id, lock op)
    unlock_inv = {}      # lock id -> earliest invoke of an unlock that may have happened
    checks = []
    lock_first = {}      # Lock idempotency key -> first invoke (a retry replays it)
    for x in P:
        f, typ, v = x["f"], x["type"], x["v"]
        if f == "approve" and typ == "ok" and v.get("grant"):
            grants[v["grant"]] = {"principal": v["principal"], "devices": v["devices"],
                                  "max": v["max"], "ok": x["cmp"], "op": x}
        elif f == "revoke" and typ == "ok":
            g = v["grant"]
            if g not in revoked or x["cmp"] < revoked[g]["cmp"]:
                revoked[g] = x
        elif f == "lock" and typ == "ok":
            locks.append((v["device"], v["lock"], x))
        if f == "lock" and typ in ("ok", "info"):
            lock_first[v["key"]] = min(lock_first.get(v["key"], INF), x["inv"])
        elif f == "unlock" and typ in ("ok", "info"):
            lid = v["lock"]
            unlock_inv[lid] = min(unlock_inv.get(lid, INF), x["inv"])
        elif f == "check":
            checks.append(x)
    # A Lock retried with its key took effect after its first attempt's invoke.
    locks = [(d, lid, dict(x, inv=lock_first.get(x["v"]["key"], x["inv"])))
             for d, lid, x in locks]
    # Grants approved by an :info approval are known only from the final read.
    for gid, fg in (final or {}).items():
        if gid not in grants:
            grants[gid] = {"principal": fg["principal"], "devices": fg["devices"],
                           "max": fg["max"], "ok": INF, "op": None}
    win, lk = _lock_index(locks, unlock_inv)
    # Attempts sharing an idempotency key are one logical check: a retry
    # replays the stored result of an earlier attempt, which took effect
    # somewhere after the *first* attempt's invoke.
    first_inv = {}
    for c in checks:
        if c["type"] in ("ok", "info"):
            k = c["v"]["key"]
            first_inv[k] = min(first_inv.get(k, INF), c["inv"])
    by_key = {}
    allows = {}          # gid -> {key: check op}
    infos = []           # :info checks (possibly consumed a use)
    stats = {}
    for c in checks:
        v = c["v"]
        if c["type"] != "ok":
            stats[c["type"]] = stats.get(c["type"], 0) + 1
            if c["type"] == "info":
                infos.append(c)
            continue
        d = v["decision"] if v["decision"] == "allow" else "deny-" + v.get("reason", "?")
        stats[d] = stats.get(d, 0) + 1
        k = v["key"]
        ans = (v["decision"], v.get("reason"), v.get("grant"),
               v.get("remaining") if v["decision"] == "allow" else None)
        prev = by_key.get(k)
        if prev is not None and prev[0] != ans:
            add("idempotency-mismatch", {"key": k, "first": list(prev[0]), "then": list(ans),
                                         "ops": [prev[1]["index"], c["index"]]})
        by_key.setdefault(k, (ans, c))
        if v["decision"] != "allow":
            continue
        g = v["grant"]
        t_inv = first_inv.get(k, c["inv"])
        allows.setdefault(g, {}).setdefault(k, c)
        meta = grants.get(g)
        if meta and (meta["principal"] != v["principal"] or v["device"] not in meta["devices"]):
            add("allow-wrong-grant", dict(_where(c), grant=g, principal=v["principal"],
                                          device=v["device"], grant_principal=meta["principal"],
                                          grant_devices=meta["devices"]))
        rv = revoked.get(g)
        if rv is not None and t_inv > rv["cmp"]:
            add("allow-after-revoke", dict(_where(c), grant=g, device=v["device"],
                                           revoke=_where(rv),
                                           after_ack_ms=(t_inv - rv["cmp"]) / 1e6))
        # Definitely locked: from the Lock's ack to the first Unlock invoke.
        w = win.get(v["device"])
        if w:
            j = bisect.bisect_left(w["start"], t_inv)    # windows started before
            if j and w["maxend"][j - 1][0] > c["cmp"]:
                lid, lo = w["maxend"][j - 1][1]
                add("allow-while-locked", dict(_where(c), grant=g, device=v["device"], lock=lid,
                                               lock_op=_where(lo),
                                               after_ack_ms=(t_inv - lo["cmp"]) / 1e6))
        # Revoked by a Lock of one of its devices invoked after the grant
        # existed, acknowledged before this check.
        for dev in (meta["devices"] if meta else ()):
            li = lk.get(dev)
            if not li:
                continue
            j = bisect.bisect_right(li["inv"], meta["ok"])
            if j < len(li["inv"]) and li["minok"][j][0] < t_inv:
                lid, lo = li["minok"][j][1]
                add("allow-after-lock-revoked", dict(_where(c), grant=g, device=v["device"],
                                                     lock=lid, locked_device=dev,
                                                     lock_op=_where(lo),
                                                     grant_op=meta["op"] and _where(meta["op"])))
                break
    # Uses.
    for g, ks in allows.items():
        meta = grants.get(g)
        rem = {}
        for k, c in ks.items():
            rem.setdefault(c["v"]["remaining"], []).append(c["index"])
        for r, idx in rem.items():
            if len(idx) > 1:
                add("use-counted-twice", {"grant": g, "remaining": r, "checks": idx})
        if meta is None:
            continue
        if len(ks) > meta["max"]:
            add("over-consumed", {"grant": g, "max": meta["max"], "allowed": len(ks),
                                  "checks": sorted(c["index"] for c in ks.values())})
        for r in rem:
            if r >= meta["max"]:
                add("remaining-out-of-range", {"grant": g, "max": meta["max"], "remaining": r,
                                               "checks": rem[r]})
    for c in checks:
        v = c["v"]
        if c["type"] != "ok" or v.get("reason") != "uses-exhausted":
            continue
        meta = grants.get(v.get("grant"))
        if meta is None:
            continue
        g = v["grant"]
        done = sum(1 for k, a in allows.get(g, {}).items()
                   if first_inv.get(k, a["inv"]) < c["cmp"])
        maybe = sum(1 for i in infos if i["inv"] < c["cmp"] and
                    i["v"]["principal"] == meta["principal"] and
                    i["v"]["device"] in meta["devices"] and i["v"]["key"] not in by_key)
        if done + maybe < meta["max"]:
            add("exhausted-early", dict(_where(c), grant=g, max=meta["max"],
                                        allowed_before=done, info_before=maybe))
    # Final uses: max - left is the number of uses consumed; it must lie
    # between the distinct :ok ALLOWs and those plus every :info check that
    # could have used this grant.
    if final_error:
        add("final-read-failed", {"error": final_error})
    for gid, fg in (final or {}).items():
        used = fg["max"] - fg["left"]
        lo_ = len(allows.get(gid, {}))
        hi_ = lo_ + sum(1 for i in infos if i["v"]["principal"] == fg["principal"]
                        and i["v"]["device"] in fg["devices"] and i["v"]["key"] not in by_key)
        if used < lo_:
            add("use-lost", {"grant": gid, "max": fg["max"], "left": fg["left"],
                             "allowed": lo_})
        elif used > hi_:
            add("phantom-use", {"grant": gid, "max": fg["max"], "left": fg["left"],
                                "allowed": lo_, "possible": hi_})
    for gid in grants:
        if final is not None and gid not in final and grants[gid]["op"] is not None:
            add("grant-lost", {"grant": gid, "approve": _where(grants[gid]["op"])})
    return {"valid?": not anomalies, "checks": stats, "grants": len(grants),
            "revokes": len(revoked), "locks": len(locks),
            "grants-used": len(allows),
            "anomaly-counts": {k: len(v) for k, v in anomalies.items()},
            "anomalies": {k: _limited(v) for k, v in anomalies.items()}}

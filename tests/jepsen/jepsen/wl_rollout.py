"""The `rollout` workload (issue 6 rollouts) and its checker.

A fleet of FLEET devices (model plc-9000, bound to the gateway, each with its
own Ed25519 key) is enrolled and activated in setup; a release key is
registered.  Process 0 (and every process that replaces it after an :info)
is the operator; the others are devices.

  operator  launch   CreateRelease (signed manifest, counter +10 each time)
                     + CreateRollout (3 stages 30/70/100%, no auto advance,
                     failure_ratio 10000: never auto-aborted) + StartRollout,
                     recorded as one op ({:counter :release :rollout})
            pause    PauseRollout (operator role)
            resume   ResumeRollout (rollout role)
            advance  AdvanceRollout{force} (admin)
            abort    AbortRollout (operator role)
  devices   desired  GetDesiredState as the gateway (unique idempotency key)
            report   ReportUpdateStatus for the device's current target,
                     device-signed, its own counter: DOWNLOADING, INSTALLING,
                     then SUCCEEDED (90%) or FAILED; 8% resend an earlier
                     report (same counter: must not be ACCEPTED twice)

Checker (check_rollout, pure).  "After X's ack" = invoked after X's :ok
completed; per device, real-time order of :ok answers.
  target-decreased      a desired state invoked after an earlier one
                        completed targets a lower release counter, although
                        the earlier target's assignment cannot have ended
                        (no abort/advance of its rollout and no terminal
                        report of the device for it invoked before the
                        later answer completed)
  target-not-above-installed  has_target with counter <= installed_counter
  installed-decreased   installed_counter lower than an earlier answer's
  install-lost          installed_counter below a SUCCEEDED report that was
                        ACCEPTED (:ok) before the desired state was invoked
  assigned-after-abort  a target of rollout R invoked after R's Abort ack,
                        for a device that no desired state invoked before the
                        abort's completion could have assigned
  target-after-abort    the same for a device assigned before (docs: "devices
                        assigned but not finished get no target from then on")
  assigned-while-paused a new assignment of R invoked after R's Pause ack and
                        completed before any Resume of R that may have
                        happened in between was invoked
  report-accepted-twice one (device, counter) ACCEPTED twice
"""

import hashlib
import struct
import threading
import time

from . import client as C
from .wire import ro_pb2, inv_pb2, ctl_pb2, grpc
from .workloads import _setup_call, _limited, _ed25519
from .wl_access import pair, INF

SC = grpc.StatusCode
MODEL = "plc-9000"
GATEWAY = "gateway"
PH = ro_pb2.UpdatePhase
TERMINAL = ("succeeded", "failed", "rolled-back", "rejected")
OPERATOR_PAUSE_S = 0.4      # operator think time between its ops
ENROLL_BATCH = 256


def cstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def manifest(version, counter, artifact, size=4096, models=(MODEL,)):
    out = cstr("warden.release.v1") + cstr(version) + struct.pack(">Q", counter)
    out += hashlib.sha256(artifact).digest() + struct.pack(">Q", size)
    out += struct.pack(">I", len(models)) + b"".join(cstr(m) for m in models)
    return out


def report_message(device_id, key_epoch, counter, rollout_id, release_counter, phase, detail):
    return (b"warden.update.v1" + cstr(device_id)
            + struct.pack(">QQQQ", key_epoch, counter, rollout_id, release_counter)
            + struct.pack(">I", phase) + cstr(detail))


def _nm(enum, v, prefix):
    return enum.Name(v).replace(prefix, "").lower().replace("_", "-")


class Dev:
    def __init__(self, did, key):
        self.id, self.key = did, key
        self.counter = 0
        self.target = None        # (rollout, release counter)
        self.phase = 0            # next phase index
        self.sent = []            # earlier report values (for resends)


class Rollout:
    name = "rollout"
    FLEET = 200
    LIVE_MAX = 4

    def __init__(self, seed, opts):
        self.seed = seed
        self.opts = opts
        self.conc = opts.concurrency if opts is not None else 10
        self.lock = threading.Lock()
        self.devs = []
        self.by_id = {}
        self.live = {}            # rollout id -> "running"|"paused"
        self.counter = 0
        self.n = 0

    def _k(self, tag):
        self.n += 1
        return "%s-%d-%d" % (tag, self.seed, self.n)

    def setup(self, ctx):
        cl = C.Client(ctx.db, ctx.rng)
        self.relkey, pub = _ed25519()
        self.key_id = "rk-j%d" % self.seed
        _setup_call(cl, "RegisterReleaseKey", ro_pb2.RegisterReleaseKeyRequest(
            key_id=self.key_id, public_key=pub, idempotency_key=self.key_id))
        gw = C.Client(ctx.db, ctx.rng, "gateway")
        _setup_call(gw, "GetCommandKey", ctl_pb2.GetCommandKeyRequest())
        for i in range(self.FLEET):
            key, pub = _ed25519()
            d = Dev("jr%d-%04d" % (self.seed % 100000, i), key)
            d.pub = pub
            self.devs.append(d)
            self.by_id[d.id] = d
        op = C.Client(ctx.db, ctx.rng, "operator")
        for b in range(0, self.FLEET, ENROLL_BATCH):
            batch = self.devs[b:b + ENROLL_BATCH]
            _setup_call(op, "EnrollDevices", inv_pb2.EnrollDevicesRequest(
                idempotency_key="jre-%d-%d" % (self.seed, b), devices=[
                    inv_pb2.EnrollDeviceRequest(
                        device_id=d.id, key_algorithm=inv_pb2.KEY_ALGORITHM_ED25519,
                        public_key=d.pub, attestation_digest=hashlib.sha256(d.id.encode()).digest(),
                        hardware_model=MODEL, firmware_version="1.0.0",
                        labels=[inv_pb2.Label(key="site", value="jepsen")],
                        gateway_id=GATEWAY) for d in batch]))

        def act(k):
            c = C.Client(ctx.db, ctx.rng.__class__(k), "operator")
            for d in self.devs[k::8]:
                r = _setup_call(c, "SetDeviceState", inv_pb2.SetDeviceStateRequest(
                    device_id=d.id, state=inv_pb2.DEVICE_STATE_ACTIVE, reason="jepsen",
                    idempotency_key="jra-" + d.id))
                d.epoch = r.resp.device.key_epoch
        ts = [threading.Thread(target=act, args=(k,), daemon=True) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)

    # -- generator --
    def gen(self, proc, rng):
        if proc % self.conc == 0:
            time.sleep(OPERATOR_PAUSE_S)
            with self.lock:
                r = rng.random()
                if not self.live or (len(self.live) < self.LIVE_MAX and r < 0.25):
                    self.counter += 10
                    return "launch", {"counter": self.counter, "key": self._k("kl")}
                rid = rng.choice(sorted(self.live))
                st = self.live[rid]
                if r < 0.45:
                    f = "pause" if st == "running" else "resume"
                elif r < 0.60:
                    f = "resume" if st == "paused" else "pause"
                elif r < 0.80:
                    f = "advance"
                else:
                    f = "abort"
                return f, {"rollout": rid, "key": self._k("k" + f[:2])}
        with self.lock:
            d = rng.choice(self.devs)
            if d.sent and rng.random() < 0.08:
                return "report", dict(rng.choice(d.sent[-6:]), resend=True)
            if d.target is None or rng.random() < 0.4 or d.phase > 2:
                return "desired", {"device": d.id, "key": self._k("kd")}
            rid, rc = d.target
            phase = ("downloading", "installing")[d.phase] if d.phase < 2 else \
                ("succeeded" if rng.random() < 0.9 else "failed")
            d.counter += 1
            d.phase += 1
            v = {"device": d.id, "counter": d.counter, "rollout": rid, "release": rc,
                 "phase": phase}
            d.sent.append(v)
            del d.sent[:-12]
            return "report", v

    # -- client --
    def invoke(self, cl, f, v):
        out = dict(v)
        if f == "launch":
            return self._launch(cl, v)
        if f in ("pause", "resume", "advance", "abort"):
            role = {"pause": "operator", "abort": "operator", "resume": "rollout",
                    "advance": "admin"}[f]
            cls = getattr(ro_pb2, f.capitalize() + "RolloutRequest")
            kw = {"force": True} if f == "advance" else {}
            o = cl.call(f.capitalize() + "Rollout", cls(
                rollout_id=v["rollout"], reason="jepsen", idempotency_key=v["key"], **kw),
                role=role)
            if o.type == "ok":
                ro = o.resp.rollout
                out["state"] = _nm(ro_pb2.RolloutState, ro.state, "ROLLOUT_STATE_")
                out["stage"] = ro.current_stage
            with self.lock:
                if o.type == "ok":
                    if out["state"] in ("running", "paused"):
                        self.live[v["rollout"]] = out["state"]
                    else:
                        self.live.pop(v["rollout"], None)
                elif o.type == "fail" and o.error in ("not-found",):
                    self.live.pop(v["rollout"], None)
            return o.type, out, o.error
        if f == "desired":
            o = cl.call("GetDesiredState", ro_pb2.GetDesiredStateRequest(
                device_id=v["device"], idempotency_key=v["key"]), role="gateway")
            if o.type == "ok":
                r = o.resp
                out.update({"target": r.has_target, "rollout": r.rollout_id,
                            "release": r.release.release_counter if r.has_target else 0,
                            "installed": r.installed_counter, "seq": r.seq})
                with self.lock:
                    d = self.by_id[v["device"]]
                    t = (r.rollout_id, r.release.release_counter) if r.has_target else None
                    if t != d.target:
                        d.target, d.phase = t, 0
            return o.type, out, o.error
        if f == "report":
            d = self.by_id[v["device"]]
            ph = PH.Value("UPDATE_PHASE_" + v["phase"].upper().replace("-", "_"))
            sig = d.key.sign(report_message(d.id, d.epoch, v["counter"], v["rollout"],
                                            v["release"], ph, "jepsen"))
            o = cl.call("ReportUpdateStatus", ro_pb2.ReportUpdateStatusRequest(
                device_id=d.id, key_epoch=d.epoch, counter=v["counter"],
                rollout_id=v["rollout"], release_counter=v["release"], phase=ph,
                detail="jepsen", signature=sig), role="gateway")
            if o.type == "ok":
                out["result"] = _nm(ro_pb2.ReportResult, o.resp.result, "REPORT_RESULT_")
                if out["result"] in ("not-assigned", "wrong-release") and not v.get("resend"):
                    with self.lock:
                        if d.target == (v["rollout"], v["release"]):
                            d.target = None
            return o.type, out, o.error
        raise ValueError(f)

    def _launch(self, cl, v):
        out = dict(v)
        c = v["counter"]
        m = manifest("3.%d.0" % c, c, b"fw-%d" % c)
        o = cl.call("CreateRelease", ro_pb2.CreateReleaseRequest(
            manifest=m, key_id=self.key_id, signature=self.relkey.sign(m),
            idempotency_key=v["key"] + "-rel"), role="rollout")
        if o.type != "ok":
            return o.type, out, o.error
        out["release-id"] = o.resp.release.release_id
        stages = [ro_pb2.RolloutStage(name="s%d" % k, percent_bp=bp, min_reported=0,
                                      success_ratio_bp=0, failure_ratio_bp=10000,
                                      auto_advance=False)
                  for k, bp in enumerate((3000, 7000, 10000))]
        o = cl.call("CreateRollout", ro_pb2.CreateRolloutRequest(
            release_id=out["release-id"], selector=ro_pb2.RolloutSelector(hardware_model=MODEL),
            stages=stages, name="j%d" % c, idempotency_key=v["key"] + "-ro"), role="rollout")
        if o.type != "ok":
            return ("info" if o.type == "info" else "fail"), out, o.error
        rid = out["rollout"] = o.resp.rollout.rollout_id
        o = cl.call("StartRollout", ro_pb2.StartRolloutRequest(
            rollout_id=rid, reason="jepsen", idempotency_key=v["key"] + "-st"), role="rollout")
        with self.lock:
            if o.type in ("ok", "info"):
                self.live[rid] = "running"
        return o.type, out, o.error

    def final(self, ctx):
        return {}

    def check(self, ops, state):
        return check_rollout(ops)


# ---------------------------------------------------------------- checker
def _w(x):
    return {"index": x["index"], "completion": x["cindex"]}


def check_rollout(ops):
    anomalies = {}

    def add(kind, x):
        anomalies.setdefault(kind, []).append(x)
    P = pair(ops)
    abort_ok = {}        # rollout -> earliest :ok abort op (by completion)
    ends = {}            # rollout -> earliest invoke of an abort, or an advance to
    #                      COMPLETED, that may have happened
    pauses = {}          # rollout -> [:ok pause ops]
    resumes = {}         # rollout -> [resume ops that may have happened]
    terminal = {}        # (device, rollout) -> earliest invoke of a terminal report (ok/info)
    installed_ok = {}    # device -> [(completion time, release counter)] ACCEPTED SUCCEEDED
    accepted = {}        # (device, counter) -> [op]
    desired = {}         # device -> [ops]
    stats = {}
    for x in P:
        f, typ, v = x["f"], x["type"], x["v"]
        stats["%s-%s" % (f, typ)] = stats.get("%s-%s" % (f, typ), 0) + 1
        may = typ in ("ok", "info")
        if may and (f == "abort" or (f == "advance" and (typ == "info" or
                                                          v.get("state") == "completed"))):
            r = v["rollout"]
            ends[r] = min(ends.get(r, INF), x["inv"])
            if f == "abort" and typ == "ok" and (r not in abort_ok or
                                                 x["cmp"] < abort_ok[r]["cmp"]):
                abort_ok[r] = x
        elif f == "pause" and typ == "ok":
            pauses.setdefault(v["rollout"], []).append(x)
        elif f == "resume" and may:
            resumes.setdefault(v["rollout"], []).append(x)
        elif f == "report":
            res = v.get("result") if typ == "ok" else None
            if v["phase"] in TERMINAL and (typ == "info" or res in ("accepted", "late")):
                k = (v["device"], v["rollout"])
                terminal[k] = min(terminal.get(k, INF), x["inv"])
            if res == "accepted":
                accepted.setdefault((v["device"], v["counter"]), []).append(x)
                if v["phase"] == "succeeded":
                    installed_ok.setdefault(v["device"], []).append((x["cmp"], v["release"]))
            if res == "late" and v["phase"] == "succeeded":
                installed_ok.setdefault(v["device"], []).append((x["cmp"], v["release"]))
        elif f == "desired":
            desired.setdefault(v["device"], []).append(x)
    for (dev, ctr), xs in accepted.items():
        if len(xs) > 1:
            add("report-accepted-twice", {"device": dev, "counter": ctr,
                                          "ops": [_w(x) for x in xs]})
    n_targets = 0
    for dev, xs in desired.items():
        oks = [x for x in xs if x["type"] == "ok"]
        by_cmp = sorted(oks, key=lambda x: x["cmp"])
        inst = sorted(installed_ok.get(dev, []))
        first = {}       # rollout -> (earliest completion of an :ok target of it, counter, op)
        for x in by_cmp:
            if x["v"]["target"]:
                r = x["v"]["rollout"]
                if r not in first:
                    first[r] = (x["cmp"], x["v"]["release"], x)
        # Could a desired state invoked before time t have assigned rollout r?
        maybe_assign = {}
        for x in xs:
            if x["type"] == "info" or (x["type"] == "ok" and x["v"]["target"]):
                r = x["v"].get("rollout") if x["type"] == "ok" else None
                key = r if r is not None else "*"
                maybe_assign[key] = min(maybe_assign.get(key, INF), x["inv"])
        k = 0
        hi_inst, hi_inst_op = -1, None
        ki = 0
        hi_acc = -1
        for b in sorted(oks, key=lambda x: x["inv"]):
            bv = b["v"]
            while k < len(by_cmp) and by_cmp[k]["cmp"] < b["inv"]:
                a = by_cmp[k]
                if a["v"]["installed"] > hi_inst:
                    hi_inst, hi_inst_op = a["v"]["installed"], a
                k += 1
            while ki < len(inst) and inst[ki][0] < b["inv"]:
                hi_acc = max(hi_acc, inst[ki][1])
                ki += 1
            if bv["installed"] < hi_inst:
                add("installed-decreased", {"device": dev, "installed": bv["installed"],
                                            "earlier": hi_inst, "op": _w(b),
                                            "earlier_op": _w(hi_inst_op)})
            if bv["installed"] < hi_acc:
                add("install-lost", {"device": dev, "installed": bv["installed"],
                                     "accepted_succeeded": hi_acc, "op": _w(b)})
            if not bv["target"]:
                continue
            n_targets += 1
            r, rc = bv["rollout"], bv["release"]
            if rc <= bv["installed"]:
                add("target-not-above-installed", {"device": dev, "rollout": r, "release": rc,
                                                   "installed": bv["installed"], "op": _w(b)})
            for r0, (t0, rc0, a) in first.items():
                if t0 < b["inv"] and rc0 > rc and ends.get(r0, INF) > b["cmp"] \
                        and terminal.get((dev, r0), INF) > b["cmp"]:
                    add("target-decreased", {"device": dev, "earlier": {"rollout": r0,
                                                                         "release": rc0,
                                                                         "op": _w(a)},
                                             "later": {"rollout": r, "release": rc,
                                                       "op": _w(b)}})
            ab = abort_ok.get(r)
            if ab is not None and b["inv"] > ab["cmp"]:
                before = min(maybe_assign.get(r, INF), maybe_assign.get("*", INF))
                kind = "target-after-abort" if before < ab["cmp"] else "assigned-after-abort"
                add(kind, {"device": dev, "rollout": r, "release": rc, "op": _w(b),
                           "abort": _w(ab), "after_ack_ms": (b["inv"] - ab["cmp"]) / 1e6})
            for p in pauses.get(r, ()):
                if not (p["cmp"] < b["inv"]):
                    continue
                if any(q["inv"] < b["cmp"] and q["cmp"] > p["inv"] for q in resumes.get(r, ())):
                    continue
                if ends.get(r, INF) < b["cmp"] and r in abort_ok:
                    continue     # reported as an abort anomaly instead
                before = min(maybe_assign.get(r, INF), maybe_assign.get("*", INF))
                if before >= p["cmp"]:
                    add("assigned-while-paused", {"device": dev, "rollout": r, "op": _w(b),
                                                  "pause": _w(p)})
                    break
    return {"valid?": not anomalies, "ops": stats, "devices": len(desired),
            "targets": n_targets, "aborted": len(abort_ok),
            "anomaly-counts": {k: len(v) for k, v in anomalies.items()},
            "anomalies": {k: _limited(v) for k, v in anomalies.items()}}

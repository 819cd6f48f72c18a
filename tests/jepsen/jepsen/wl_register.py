"""The `register` workload: a linearizable read/write/cas register per key,
over one device's label `v`, checked by jepsen.wgl (cas-register model,
independent keys, Knossos semantics).

  key k        device "jg<seed>-reg-<k>", enrolled in setup without label v
               (so the register starts nil)
  read  [k nil]      GetDevice (LINEARIZABLE): the value of label v, nil when
                     absent -> :ok [k v]
  write [k x]        UpdateDeviceLabels{labels [site, v=x],
                     expected_updated_index 0} (unconditional) -> :ok
  cas   [k [a b]]    "set to b if the value is a", honestly as a client
                     read-then-conditional-update: GetDevice (LINEARIZABLE)
                     -> (value, updated_index); value != a -> :fail (nothing
                     was written); else UpdateDeviceLabels{v=b,
                     expected_updated_index = the version read}:
                     :ok, FAILED_PRECONDITION (version moved) -> :fail,
                     ambiguous -> :info.  The cas takes effect at the
                     update's commit, where the version check guarantees the
                     value is still a.  A read that fails or is ambiguous
                     makes the cas :fail: no write was sent.
Every update carries a fresh idempotency key.  After the load, each key is
read once more (recorded).
"""

import threading

from . import client as C
from .wire import inv_pb2, HAVE_UPDATE_LABELS
from .edn import Keyword as _kw
from .workloads import _setup_call, enroll_req

ACTIVE = inv_pb2.DEVICE_STATE_ACTIVE
LINEARIZABLE = inv_pb2.READ_CONSISTENCY_LINEARIZABLE if hasattr(
    inv_pb2, "READ_CONSISTENCY_LINEARIZABLE") else 0
LABEL = "v"
VALUES = 5            # writes and cas draw from 0..VALUES-1, as Jepsen's cas-register


class Register:
    name = "register"
    KEYS = 6

    def __init__(self, seed, opts):
        self.seed = seed
        self.opts = opts
        self.lock = threading.Lock()
        self.n = 0
        self.keys = []

    def _k(self):
        with self.lock:
            self.n += 1
            return "kw-%d-%d" % (self.seed, self.n)

    def dev(self, k):
        return "jg%d-reg-%d" % (self.seed, k)

    def setup(self, ctx):
        if not HAVE_UPDATE_LABELS:
            raise RuntimeError("no Inventory/UpdateDeviceLabels in proto/warden/v1")
        cl = C.Client(ctx.db, ctx.rng)
        for k in range(self.KEYS):
            _setup_call(cl, "EnrollDevice", enroll_req(self.dev(k), "ikr-%d-%d" % (self.seed, k)))
            self.keys.append(k)
        # Probe: a server without the RPC answers UNIMPLEMENTED.
        o = cl.call("UpdateDeviceLabels", inv_pb2.UpdateDeviceLabelsRequest(
            device_id=self.dev(0), labels=[inv_pb2.Label(key="site", value="jepsen")],
            idempotency_key="probe-%d" % self.seed), timeout=5.0, deadline_s=10.0)
        if o.type != "ok":
            raise RuntimeError("UpdateDeviceLabels probe: %s (%s); this wardend cannot run "
                               "the register workload" % (o.type, o.error))

    def gen(self, proc, rng):
        k = rng.choice(self.keys)
        r = rng.random()
        if r < 0.5:
            return "read", [k, None]
        if r < 0.75:
            return "write", [k, rng.randrange(VALUES)]
        return "cas", [k, [rng.randrange(VALUES), rng.randrange(VALUES)]]

    def _read(self, cl, k):
        o = cl.call("GetDevice", inv_pb2.GetDeviceRequest(device_id=self.dev(k),
                                                         consistency=LINEARIZABLE))
        if o.type != "ok":
            return o, None, None
        d = o.resp.device
        v = next((int(lb.value) for lb in d.labels if lb.key == LABEL), None)
        return o, v, d.updated_index

    def _update(self, cl, k, x, expected):
        return cl.call("UpdateDeviceLabels", inv_pb2.UpdateDeviceLabelsRequest(
            device_id=self.dev(k), expected_updated_index=expected, idempotency_key=self._k(),
            labels=[inv_pb2.Label(key="site", value="jepsen"),
                    inv_pb2.Label(key=LABEL, value=str(x))]))

    def invoke(self, cl, f, v):
        k = v[0]
        if f == "read":
            o, x, _ = self._read(cl, k)
            if o.type == "ok":
                return "ok", [k, x], None
            # A read changes nothing: an unknown outcome is just a failed read.
            return "fail", v, o.error
        if f == "write":
            o = self._update(cl, k, v[1], 0)
            return o.type, v, o.error
        frm, to = v[1]
        o, x, ver = self._read(cl, k)
        if o.type != "ok":
            return "fail", v, "read-" + (o.error or o.type)
        if x != frm:
            return "fail", v, "value-differs"
        if ver == 0:
            # 0 would be an unconditional write; a device always has a version.
            return "fail", v, "no-version"
        o = self._update(cl, k, to, ver)
        return o.type, v, o.error

    def final(self, ctx):
        cl = C.Client(ctx.db, ctx.rng)
        proc = ctx.final_process
        for k in self.keys:
            ctx.rec.add(proc, "invoke", "read", [k, None])
            typ, out, err = self.invoke(cl, "read", [k, None])
            ctx.rec.add(proc, typ, "read", out, **({"error": err} if err else {}))
            proc += 1
        return {}

    def check(self, ops, state):
        from . import wgl
        hist = [o for o in ops if isinstance(o["process"], int)
                and o["f"] in ("read", "write", "cas")]
        r = wgl.check(hist, model="cas-register", independent="yes", timeout=120)
        m = r.to_edn_map()
        out = {getattr(k, "name", k): x for k, x in m.items()}
        out["valid?"] = r.valid
        out["anomaly-counts"] = {"nonlinearizable-key": len(m[_kw("anomalies")])} \
            if r.valid is False else {}
        if r.valid is False:
            out["report"] = r.report()[-4000:]
        return out

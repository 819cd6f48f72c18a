"""Simulated histories for the checker tests.

simulate() runs client processes against an atomic (hence linearizable)
register: each op is invoked, takes effect at a random later step, and
completes at a random step after that, so ops overlap randomly.  Some ops
crash (:info) before or after taking effect; the crashed process comes back
under a new process id, as in Jepsen.
"""

import random

from jepsen.edn import Keyword as K, dumps

READ, WRITE, CAS = "read", "write", "cas"


def simulate(n_procs=5, ops_per_proc=2000, seed=0, keys=None,
             values="unique", info_rate=0.0, cas=True, nemesis_every=0):
    """Return a list of op dicts (Keyword keys), in history order.

    values: "unique" (every write/cas-to value is fresh) or an int n
    (values drawn from range(n), as in Jepsen's cas-register tests).
    keys: None for a single register, else an int number of independent
    keys (op values become [k v] tuples)."""
    rng = random.Random(seed)
    reg = {}
    counter = [0]

    def fresh():
        if values == "unique":
            counter[0] += 1
            return counter[0]
        return rng.randrange(values)

    workers = []
    for w in range(n_procs):
        workers.append({"pid": w, "stage": "idle", "left": ops_per_proc})
    hist = []
    t = [0]

    def emit(proc, typ, f, value, **extra):
        t[0] += 1
        op = {K("process"): proc, K("type"): K(typ), K("f"): K(f),
              K("value"): value, K("time"): t[0] * 1000}
        for k, v in extra.items():
            op[K(k)] = v
        hist.append(op)

    def wrap(key, v):
        return v if keys is None else (key, v)

    active = list(range(n_procs))
    while active:
        w = workers[rng.choice(active)]
        if nemesis_every and rng.randrange(nemesis_every) == 0:
            emit(K("nemesis"), "info", "start" if rng.random() < .5
                 else "stop", None)
        st = w["stage"]
        if st == "idle":
            if w["left"] == 0:
                active.remove(workers.index(w))
                continue
            w["left"] -= 1
            key = None if keys is None else rng.randrange(keys)
            r = rng.random()
            if r < 0.4:
                f, v = READ, None
            elif r < 0.7 or not cas:
                f, v = WRITE, fresh()
            else:
                cur = reg.get(key)
                frm = cur if (rng.random() < 0.6 and cur is not None) \
                    else (rng.randrange(values) if values != "unique"
                          else rng.randrange(1, counter[0] + 2))
                f, v = CAS, (frm, fresh())
            w["op"] = (key, f, v)
            emit(w["pid"], "invoke", f, wrap(key, v))
            w["stage"] = "invoked"
        elif st == "invoked":
            key, f, v = w["op"]
            if info_rate and rng.random() < info_rate / 2:
                emit(w["pid"], "info", f, wrap(key, v),
                     error=K("timed-out"))
                w["pid"] += n_procs
                w["stage"] = "idle"
                continue
            cur = reg.get(key)
            if f == READ:
                res = ("ok", cur)
            elif f == WRITE:
                reg[key] = v
                res = ("ok", v)
            else:
                if cur == v[0]:
                    reg[key] = v[1]
                    res = ("ok", v)
                else:
                    res = ("fail", v)
            w["res"] = res
            w["stage"] = "applied"
        else:
            key, f, v = w["op"]
            if info_rate and rng.random() < info_rate / 2:
                emit(w["pid"], "info", f, wrap(key, v),
                     error=K("timed-out"))
                w["pid"] += n_procs
            else:
                typ, val = w["res"]
                emit(w["pid"], typ, f, wrap(key, val))
            w["stage"] = "idle"
    return hist


def _name(x):
    return x.name if isinstance(x, K) else x


def pairs(hist):
    """[(invoke_index, completion_index or None)] of client ops."""
    pending, out = {}, []
    for i, op in enumerate(hist):
        p = op[K("process")]
        if not isinstance(p, int):
            continue
        if _name(op[K("type")]) == "invoke":
            pending[p] = i
        else:
            out.append((pending.pop(p), i))
    for i in pending.values():
        out.append((i, None))
    return sorted(out)


def corrupt_stale_read(hist, seed=0):
    """Return a copy of a unique-values, single-register history in which
    one :ok read returns a value that was provably overwritten before the
    read began: W wrote v (ok), X wrote later (ok, invoked after W
    completed), and the read is invoked after X completed.  Returns
    (history, index of the corrupted completion)."""
    rng = random.Random(seed)
    ps = pairs(hist)

    def t(i):
        return _name(hist[i][K("type")])

    def f(i):
        return _name(hist[i][K("f")])

    writes = [(a, b) for a, b in ps if b is not None and f(a) == "write"
              and t(b) == "ok"]
    reads = [(a, b) for a, b in ps if b is not None and f(a) == "read"
             and t(b) == "ok"]
    mid = len(reads) // 2
    for ra, rb in reads[mid:] + reads[:mid]:
        xs = [(a, b) for a, b in writes if b < ra]
        if len(xs) < 2:
            continue
        xa, xb = xs[-1]
        ws = [(a, b) for a, b in xs if b < xa]
        if not ws:
            continue
        wa, wb = ws[rng.randrange(len(ws))]
        v = hist[wa][K("value")]
        if v == hist[rb][K("value")]:
            continue
        out = [dict(op) for op in hist]
        out[rb][K("value")] = v
        return out, rb
    raise ValueError("no read to corrupt")


def to_edn_lines(hist):
    return "".join(dumps(op) + "\n" for op in hist)


def to_log_lines(hist):
    out = []
    for op in hist:
        p = op[K("process")]
        out.append("INFO  jepsen.util - %s\t%s\t%s\t%s\n" % (
            dumps(p), dumps(op[K("type")]), dumps(op[K("f")]),
            dumps(op[K("value")])))
    return "".join(out)

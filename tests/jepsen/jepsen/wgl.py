"""Wing-Gong linearizability search with Lowe's memoization (WGL).

    from jepsen.wgl import check
    r = check("history.edn")                  # a path, text, or op dicts
    r.valid        # True / False / None (search budget exhausted)
    print(r.report())

Models (Knossos semantics, initial value nil):
  cas-register  read / write / cas [from to]  (cas succeeds iff value == from)
  register      read / write

The history is split per independent key (P-compositionality) and each key
is searched separately.  The search keeps the WGL entry list (call and return
events in history order, as a doubly linked list with lift/unlift), an
explicit backtracking stack, and a cache of (linearized-set bitset, model
state) configurations already explored.

:info operations have no return entry: they may be linearized at any point
after their invoke, or never.  They are tried only after every :ok candidate
(so "it never happened" is explored first), and a configuration is pruned
when the cache already holds one with the same :ok set and state whose set
of linearized :info ops is a subset (it dominates: it can do everything the
new one can).
"""

import time as _time

from . import edn, history as H
from .history import HistoryError

__all__ = ["check", "check_key", "Result", "KeyResult", "MODELS",
           "HistoryError"]

READ, WRITE, CAS, READ_ANY = 0, 1, 2, 3

MODELS = {
    "cas-register": ("read", "write", "cas"),
    "register": ("read", "write"),
}


class KeyResult(object):
    """Verdict for one key.  When invalid, the failure fields describe the
    furthest point the search reached (the smallest failing window):

      failed_op   the op that could not be linearized before it returned
      prefix      the longest linearization found up to that point (ops)
      state       the model state after the prefix
      candidates  the ops that could have gone next there, with the reason
                  each was rejected
    """

    def __init__(self, key, n_ops, valid, configs, seconds):
        self.key, self.n_ops, self.valid = key, n_ops, valid
        self.configs, self.seconds = configs, seconds
        self.failed_op = None
        self.prefix = []
        self.state = None
        self.candidates = []

    def window_lines(self):
        ops = [o for o, _ in self.candidates] + [self.failed_op]
        los = [o.call_line for o in ops if o.call_line is not None]
        his = [o.ret_line for o in ops if o.ret_line is not None]
        return (min(los) if los else None), (max(his) if his else None)

    def report(self, prefix_tail=6):
        k = "" if self.key is None else "key %s: " % edn.dumps(self.key)
        if self.valid:
            return "%slinearizable (%d ops)" % (k, self.n_ops)
        if self.valid is None:
            return "%sunknown: search stopped (timeout or budget) after " \
                   "%d configurations" % (k, self.configs)
        out = ["%sNOT linearizable (%d ops)" % (k, self.n_ops)]
        lo, hi = self.window_lines()
        if lo is not None:
            out.append("  failing window: lines %s-%s" % (lo, hi))
        out.append("  could not linearize: " + self.failed_op.describe())
        out.append("  longest linearizable prefix reaching it: %d ops; "
                   "register then = %s" % (len(self.prefix),
                                           edn.dumps(self.state)))
        if self.prefix:
            tail = self.prefix[-prefix_tail:]
            if len(self.prefix) > len(tail):
                out.append("    ... %d earlier ops" %
                           (len(self.prefix) - len(tail)))
            for o in tail:
                out.append("    " + o.describe())
        out.append("  concurrent ops that could not be placed next:")
        for o, why in self.candidates:
            out.append("    %s\n        -> %s" % (o.describe(), why))
        return "\n".join(out)


class Result(object):
    def __init__(self, model, keys, n_events, n_ops, seconds, warnings,
                 independent):
        self.model, self.keys = model, keys
        self.n_events, self.n_ops, self.seconds = n_events, n_ops, seconds
        self.warnings, self.independent = warnings, independent

    @property
    def valid(self):
        vs = [k.valid for k in self.keys]
        if any(v is False for v in vs):
            return False
        if any(v is None for v in vs):
            return None
        return True

    @property
    def failures(self):
        return [k for k in self.keys if k.valid is False]

    def summary(self):
        verdict = {True: "linearizable", False: "NOT linearizable",
                   None: "unknown"}[self.valid]
        search = sum(k.seconds for k in self.keys)
        rate = self.n_ops / search if search > 0 else 0.0
        return ("%s: %d ops checked (%d events), %d key%s%s, model %s, "
                "%.3f s total, search %.3f s (%.0f ops/s)" % (
                    verdict, self.n_ops, self.n_events, len(self.keys),
                    "" if len(self.keys) == 1 else "s",
                    " (independent)" if self.independent else "",
                    self.model, self.seconds, search, rate))

    def report(self):
        parts = [k.report() for k in self.keys if k.valid is not True]
        parts.append(self.summary())
        return "\n".join(parts)

    def to_edn_map(self):
        """A map for results.edn."""
        K = edn.Keyword
        anomalies = []
        for k in self.failures:
            anomalies.append({
                K("key"): k.key,
                K("op"): _op_map(k.failed_op),
                K("state"): k.state,
                K("prefix-length"): len(k.prefix),
                K("last-linearized"): [_op_map(o) for o in k.prefix[-6:]],
                K("concurrent"): [_op_map(o, why=w)
                                  for o, w in k.candidates],
            })
        return {K("valid?"): {True: True, False: False,
                              None: K("unknown")}[self.valid],
                K("model"): K(self.model),
                K("op-count"): self.n_ops,
                K("key-count"): len(self.keys),
                K("anomalies"): anomalies}


def _op_map(o, why=None):
    K = edn.Keyword
    m = {K("process"): o.process, K("type"): K(o.status),
         K("f"): K(o.f), K("value"): o.value,
         K("lines"): [o.call_line, o.ret_line]}
    if why is not None:
        m[K("why")] = why
    return m


def _compile(ops, model, nil_read_any, path):
    kinds, a, b = [], [], []
    for o in ops:
        if o.f == "read":
            if nil_read_any and o.value is None:
                kinds.append(READ_ANY)
            else:
                kinds.append(READ)
            a.append(o.value)
            b.append(None)
        elif o.f == "write":
            kinds.append(WRITE)
            a.append(o.value)
            b.append(None)
        elif o.f == "cas":
            v = o.value
            if not (isinstance(v, tuple) and len(v) == 2):
                raise HistoryError("cas value must be [from to], got %s" %
                                   edn.dumps(v), o.call_line, None, path)
            kinds.append(CAS)
            a.append(v[0])
            b.append(v[1])
        else:
            raise HistoryError("op f :%s is not supported by model %s" %
                               (o.f, model), o.call_line, None, path)
    return kinds, a, b


def _why(kind, a, b, state):
    if kind == READ:
        if state == a:
            return "read fits, but no linearization of the rest follows"
        return "read %s, but the register is %s" % (edn.dumps(a),
                                                    edn.dumps(state))
    if kind == CAS:
        if state == a:
            return "cas fits, but no linearization of the rest follows"
        return "cas expects %s, but the register is %s" % (
            edn.dumps(a), edn.dumps(state))
    return "%s fits, but no linearization of the rest follows" % (
        "write" if kind == WRITE else "read")


def prune_unobserved_info(ops, nil_read_any=False):
    """Drop :info writes/cas whose written value nothing could observe.

    If no other op reads value v or cas-es from v, an :info op writing v can
    never be needed in a linearization: right after it, a read or cas would
    have to match v (none does), so only writes (or, with nil_read_any,
    unconstrained nil reads) may follow it before the value is overwritten,
    and removing it leaves a valid linearization.  Conversely, dropping it
    only removes the "it happened" option.  Iterated to a fixpoint.  This
    keeps the search from exploring every place each irrelevant timed-out
    write could have taken effect."""
    live = list(ops)
    while True:
        observed = {}
        for o in live:
            if o.f == "read":
                if not (nil_read_any and o.value is None):
                    observed[_hkey(o.value)] = observed.get(
                        _hkey(o.value), 0) + 1
            elif o.f == "cas" and isinstance(o.value, tuple) and \
                    len(o.value) == 2:
                observed[_hkey(o.value[0])] = observed.get(
                    _hkey(o.value[0]), 0) + 1
        keep = []
        for o in live:
            if o.status == "info" and o.f in ("write", "cas"):
                if o.f == "write":
                    v, mine = o.value, 0
                elif isinstance(o.value, tuple) and len(o.value) == 2:
                    v = o.value[1]
                    mine = 1 if _hkey(o.value[0]) == _hkey(v) else 0
                else:
                    keep.append(o)
                    continue
                if observed.get(_hkey(v), 0) - mine <= 0:
                    continue
            keep.append(o)
        if len(keep) == len(live):
            return keep
        live = keep


def _hkey(v):
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def check_key(ops, model="cas-register", key=None, initial=None,
              nil_read_any=False, max_configs=None, deadline=None,
              path=None, prune=True):
    """WGL search over one key's Operations (from history.pair)."""
    t0 = _time.monotonic()
    n_given = len(ops)
    _compile(ops, model, nil_read_any, path)      # validate every op
    if prune:
        ops = prune_unobserved_info(ops, nil_read_any)
    kinds, A, B = _compile(ops, model, nil_read_any, path)
    n = len(ops)
    is_ok = [o.status == "ok" for o in ops]
    # separate bit spaces for ok and info ops
    bitno = [0] * n
    n_ok = n_info = 0
    for i in range(n):
        if is_ok[i]:
            bitno[i] = n_ok
            n_ok += 1
        else:
            bitno[i] = n_info
            n_info += 1
    has_info = n_info > 0

    # entries: 1..E in history order, HEAD = 0, TAIL = E + 1
    evs = []
    for i, o in enumerate(ops):
        evs.append((o.call, 1, i))
        if is_ok[i]:
            evs.append((o.ret, 0, i))
    evs.sort()
    E = len(evs)
    HEAD, TAIL = 0, E + 1
    nxt = list(range(1, E + 2)) + [TAIL]
    prv = [HEAD] + list(range(0, E + 1))
    ent_op = [-1] * (E + 2)
    ent_call = [False] * (E + 2)
    ent_pos = [0] * (E + 2)
    match = [0] * (E + 2)
    call_entry = [0] * n
    for e, (pos, is_call, i) in enumerate(evs, 1):
        ent_op[e], ent_call[e], ent_pos[e] = i, bool(is_call), pos
        if is_call:
            call_entry[i] = e
        else:
            match[call_entry[i]] = e
    ent_pos[TAIL] = float("inf")

    state = initial
    lin_ok = 0
    lin_info = 0
    remaining = n_ok
    stack = None           # (entry, saved_state, phase, parent)
    depth = 0
    cache_ok = set()
    cache_info = {}
    configs = 0
    best = None            # (pos, depth, ret_entry, stack, state, cands)

    def seen(nl_ok, nl_info, ns):
        """Record a configuration; False if it (or a dominating one) was
        explored before."""
        ck = (nl_ok, ns)
        if not has_info:
            if ck in cache_ok:
                return True
            cache_ok.add(ck)
            return False
        lst = cache_info.get(ck)
        if lst is None:
            cache_info[ck] = [nl_info]
            return False
        for x in lst:
            if x & nl_info == x:
                return True
        lst.append(nl_info)
        return False

    e = nxt[HEAD]
    phase = 0
    sweep = True          # look for a read that fits before anything else
    valid = None
    while True:
        if remaining == 0:
            valid = True
            break
        if sweep:
            # A candidate :ok read that fits the current state can be
            # linearized right now without loss of generality (it does not
            # change the state, and nothing must precede it), so it is
            # forced: if the search fails after it, this configuration
            # fails.  This removes most of the branching in read-heavy
            # histories.
            sweep = False
            c = nxt[HEAD]
            forced = 0
            while ent_call[c]:
                o = ent_op[c]
                if is_ok[o]:
                    k = kinds[o]
                    if (k == READ and A[o] == state) or k == READ_ANY:
                        forced = c
                        break
                c = nxt[c]
            if forced:
                o = ent_op[forced]
                nl_ok = lin_ok | (1 << bitno[o])
                if seen(nl_ok, lin_info, state):
                    # explored before and failed: so does this config
                    e = c
                    while ent_call[e]:
                        e = nxt[e]
                    phase = 1
                else:
                    configs += 1
                    stack = (forced, state, 2, stack)
                    depth += 1
                    lin_ok = nl_ok
                    p, q = prv[forced], nxt[forced]
                    nxt[p] = q
                    prv[q] = p
                    r = match[forced]
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    remaining -= 1
                    e = nxt[HEAD]
                    phase = 0
                    sweep = True
                    continue
        if ent_call[e]:
            o = ent_op[e]
            if is_ok[o] != (phase == 0):
                e = nxt[e]
                continue
            k = kinds[o]
            if k == READ:
                fits = state == A[o]
                ns = state
            elif k == WRITE:
                fits = True
                ns = A[o]
            elif k == CAS:
                fits = state == A[o]
                ns = B[o]
            else:
                fits = True
                ns = state
            if fits and not (ns == state and not is_ok[o]):
                # (an :info op that leaves the state unchanged is dominated
                # by not linearizing it, which is being explored already)
                if is_ok[o]:
                    nl_ok = lin_ok | (1 << bitno[o])
                    nl_info = lin_info
                else:
                    nl_ok = lin_ok
                    nl_info = lin_info | (1 << bitno[o])
                if not seen(nl_ok, nl_info, ns):
                    configs += 1
                    if configs & 0xFFFF == 0:
                        if max_configs is not None and \
                                configs >= max_configs:
                            break
                        if deadline is not None and \
                                _time.monotonic() > deadline:
                            break
                    stack = (e, state, phase, stack)
                    depth += 1
                    state, lin_ok, lin_info = ns, nl_ok, nl_info
                    # lift: unlink the call entry and its return entry
                    p, q = prv[e], nxt[e]
                    nxt[p] = q
                    prv[q] = p
                    r = match[e]
                    if r:
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                    e = nxt[HEAD]
                    phase = 0
                    sweep = True
                    continue
            e = nxt[e]
            continue
        # a return entry (of an unlinearized ok op) or the tail
        if phase == 0 and has_info:
            phase = 1
            e = nxt[HEAD]
            continue
        # remember the furthest failure: latest blocking return, then the
        # most :ok ops linearized, then the fewest :info ops assumed
        rank = (ent_pos[e], n_ok - remaining, n_ok - remaining - depth)
        if best is None or rank > best[0]:
            cands = []
            c = nxt[HEAD]
            while c != e:
                if ent_call[c]:
                    cands.append(ent_op[c])
                c = nxt[c]
            best = (rank, depth, e, stack, state, cands)
        # backtrack; a forced read's failure is its parent's failure too
        while True:
            if stack is None:
                valid = False
                break
            e, state, phase, stack = stack
            depth -= 1
            o = ent_op[e]
            r = match[e]
            if r:
                lin_ok ^= 1 << bitno[o]
                p, q = prv[r], nxt[r]
                nxt[p] = r
                prv[q] = r
                remaining += 1
            else:
                lin_info ^= 1 << bitno[o]
            p, q = prv[e], nxt[e]
            nxt[p] = e
            prv[q] = e
            if phase != 2:
                break
        if valid is False:
            break
        e = nxt[e]

    res = KeyResult(key, n_given, valid, configs, _time.monotonic() - t0)
    if valid is False and best is not None:
        _, _, ret_e, st, bstate, cands = best
        res.failed_op = ops[ent_op[ret_e]]
        prefix = []
        while st is not None:
            prefix.append(ops[ent_op[st[0]]])
            st = st[3]
        prefix.reverse()
        res.prefix = prefix
        res.state = bstate
        fo = ent_op[ret_e]
        res.candidates = [(ops[i], _why(kinds[i], A[i], B[i], bstate))
                          for i in cands if i != fo] + \
            [(ops[fo], _why(kinds[fo], A[fo], B[fo], bstate))]
        res.candidates.sort(key=lambda c: c[0].call)
    return res


def check(history, model="cas-register", independent="auto", initial=None,
          nil_read_any=False, fmt="auto", max_configs=None, timeout=None,
          path=None):
    """Check a history for linearizability.

    history: a file path, EDN/log text (str containing a newline), a list of
    op dicts ({'process': 0, 'type': 'invoke', 'f': 'write', 'value': 3},
    keys/values as str or edn.Keyword) or a list of history.Event.

    Raises HistoryError when the history is malformed."""
    if model not in MODELS:
        raise ValueError("unknown model %r (known: %s)" %
                         (model, ", ".join(sorted(MODELS))))
    t0 = _time.monotonic()
    if isinstance(history, str) and "\n" not in history:
        path = path or history
        events = H.load(history, fmt)
    elif isinstance(history, str):
        events = H.parse(history, fmt, path)
    else:
        events = H.normalize(history)
    warnings = []
    ops = H.pair(events, fs=set(MODELS[model]), path=path,
                 warnings=warnings)
    keys = H.split_keys(ops, independent, path)
    deadline = None if timeout is None else t0 + timeout
    results = []
    try:
        order = sorted(keys, key=lambda k: (str(type(k)), k))
    except TypeError:
        order = list(keys)
    for k in order:
        results.append(check_key(keys[k], model, k, initial, nil_read_any,
                                 max_configs, deadline, path))
    n_ops = sum(len(v) for v in keys.values())
    indep = not (len(keys) == 1 and None in keys) and bool(keys)
    return Result(model, results, len(events), n_ops,
                  _time.monotonic() - t0, warnings, indep)

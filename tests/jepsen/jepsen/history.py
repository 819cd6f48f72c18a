"""Jepsen histories: parsing (EDN and jepsen.util log lines) and pairing.

A *history* is a sequence of events, each an :invoke or a completion
(:ok, :fail, :info) of an operation by a process.  `pair()` turns it into
completed `Operation`s with Jepsen/Knossos semantics:

  * a process has at most one outstanding operation; its next completion
    event completes it;
  * :fail  -> the operation definitely did not happen: removed;
  * :info  -> unknown: it may take effect at any point after its invoke, or
              never (its return time is infinite).  A crashed process never
              completes anything again; if a history nevertheless reuses the
              id, the next event of that process starts a fresh operation;
  * an invoke with no completion by the end of the history counts as :info;
  * a read's value is the one in its :ok completion; a :info read constrains
    nothing and is dropped;
  * events of the :nemesis process (or any non-client process with an f the
    model does not know) are ignored.
"""

import re

from . import edn
from .edn import Keyword, EdnError

__all__ = ["HistoryError", "Event", "Operation", "load", "parse",
           "parse_edn", "parse_log", "normalize", "pair", "split_keys"]

TYPES = ("invoke", "ok", "fail", "info")


class HistoryError(ValueError):
    """Malformed history.  line/col are 1-based when known."""
    def __init__(self, msg, line=None, col=None, path=None):
        self.msg, self.line, self.col, self.path = msg, line, col, path
        super().__init__(self.render())

    def render(self):
        where = self.path or "<history>"
        if self.line is not None:
            where += ":%d" % self.line
            if self.col is not None:
                where += ":%d" % self.col
        return "%s: %s" % (where, self.msg)


class Event(object):
    """One line of a history."""
    __slots__ = ("index", "process", "type", "f", "value", "line", "time",
                 "error")

    def __init__(self, index, process, type, f, value, line=None, time=None,
                 error=None):
        self.index, self.process, self.type, self.f = index, process, type, f
        self.value, self.line, self.time, self.error = value, line, time, error

    def __repr__(self):
        return "%s %s %s %s" % (fmt_process(self.process), ":" + self.type,
                                ":" + str(self.f), edn.dumps(self.value))


class Operation(object):
    """An invoke paired with its completion.

    status: 'ok' or 'info'.  call/ret: event indices (ret None = infinity).
    value: the model-level value (read: the value read; write: the value
    written; cas: (from, to)), with the independent key stripped off.
    """
    __slots__ = ("id", "process", "f", "value", "status", "call", "ret",
                 "call_line", "ret_line", "key", "invoke", "complete")

    def __init__(self, id, process, f, value, status, call, ret, call_line,
                 ret_line, key=None, invoke=None, complete=None):
        self.id, self.process, self.f, self.value = id, process, f, value
        self.status, self.call, self.ret = status, call, ret
        self.call_line, self.ret_line, self.key = call_line, ret_line, key
        self.invoke, self.complete = invoke, complete

    def describe(self):
        v = edn.dumps(self.value)
        s = "process %s %s :%s %s" % (fmt_process(self.process),
                                      ":" + self.status, self.f, v)
        if self.call_line is not None:
            if self.ret_line is not None:
                s += "  (lines %d-%d)" % (self.call_line, self.ret_line)
            else:
                s += "  (line %d-, never completed)" % self.call_line
        return s

    __repr__ = describe


def fmt_process(p):
    return repr(p) if isinstance(p, Keyword) else str(p)


# ------------------------------------------------------------------ parsing

def _name(x):
    if isinstance(x, Keyword):
        return x.name
    if isinstance(x, str):
        return x[1:] if x.startswith(":") else x
    if isinstance(x, edn.Symbol):
        return x.name
    return x


_LOG_PREFIX = re.compile(r"\bjepsen\.util\s*[-:]\s*")
_LOG_OP = re.compile(
    r"(?P<proc>:?[\w.\-]+)[ \t]+:(?P<type>invoke|ok|fail|info)[ \t]+"
    r"(?P<f>:?[^\s]+)(?:[ \t]+(?P<rest>.*?))?[ \t]*\r?\Z")
_BARE_OP = re.compile(r"[ \t]*(?:\d+|:[\w.\-]+)[ \t]+:(?:invoke|ok|fail|info)"
                      r"[ \t]+:")


def detect_format(text):
    """'log' for jepsen.util log lines, else 'edn'."""
    first = True
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        if first and s[0] in "{[#(":
            return "edn"
        first = False
        if _LOG_PREFIX.search(line) or _BARE_OP.match(line):
            return "log"
    return "edn"


def _parse_process(tok):
    if tok.startswith(":"):
        return Keyword(tok[1:])
    try:
        return int(tok)
    except ValueError:
        return tok


def parse_log(text, path=None):
    events = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LOG_PREFIX.search(line)
        if m:
            body_at = m.end()
        elif _BARE_OP.match(line):
            body_at = len(line) - len(line.lstrip())
        else:
            continue            # other log output
        body = line[body_at:]
        om = _LOG_OP.match(body)
        if om is None:
            if re.search(r":(?:invoke|ok|fail|info)\b", body):
                raise HistoryError("cannot parse log operation %r" %
                                   body.strip(), lineno, body_at + 1, path)
            continue            # jepsen.util chatter that is not an op
        proc = _parse_process(om.group("proc"))
        rest = om.group("rest") or ""
        value, error = None, None
        if rest:
            try:
                forms = edn.iter_forms(rest)
                first = next(forms, None)
                if first is not None:
                    value = first[0]
                    # anything after the value is the op's :error
                    try:
                        second = next(forms, None)
                        if second is not None:
                            error = second[0]
                    except EdnError:
                        error = rest
            except EdnError as e:
                if proc == Keyword("nemesis") or not isinstance(proc, int):
                    value = rest
                else:
                    col = body_at + om.start("rest") + (e.col or 1)
                    raise HistoryError("bad value %r: %s" % (rest, e.msg),
                                       lineno, col, path)
        events.append(Event(len(events), proc, om.group("type"),
                            _name(om.group("f")), value, lineno, None,
                            error))
    if not events:
        raise HistoryError("no jepsen.util operation lines found", path=path)
    return events


def parse_edn(text, path=None):
    lines = edn._Lines(text)
    try:
        forms = list(edn.iter_forms(text))
    except EdnError as e:
        raise HistoryError(e.msg, e.line, e.col, path)
    if len(forms) == 1 and isinstance(forms[0][0], tuple):
        vec, vpos = forms[0]
        forms = [(x, getattr(x, "pos", vpos)) for x in vec]
    events = []
    for value, pos in forms:
        line, col = lines.linecol(pos)
        if not isinstance(value, dict):
            raise HistoryError("expected an op map, found %s" %
                               edn.dumps(value)[:60], line, col, path)
        events.append(_event_from_map(value, len(events), line, col, path))
    if not events:
        raise HistoryError("empty history", path=path)
    return events


def _get(m, name):
    v = m.get(Keyword(name), _MISSING)
    if v is _MISSING:
        v = m.get(name, _MISSING)
    return v


_MISSING = object()


def _event_from_map(m, index, line=None, col=None, path=None):
    typ = _name(_get(m, "type"))
    if typ is _MISSING or typ not in TYPES:
        raise HistoryError("op has no valid :type (expected :invoke, :ok, "
                           ":fail or :info): %s" % edn.dumps(m)[:80]
                           if isinstance(m, edn.EdnMap) else
                           "op has no valid :type: %r" % (m,),
                           line, col, path)
    proc = _get(m, "process")
    if proc is _MISSING:
        raise HistoryError("op has no :process", line, col, path)
    if isinstance(proc, str) and not isinstance(proc, Keyword):
        proc = Keyword(proc[1:]) if proc.startswith(":") else \
            (int(proc) if proc.isdigit() else proc)
    f = _get(m, "f")
    f = None if f is _MISSING else _name(f)
    value = _get(m, "value")
    value = None if value is _MISSING else _tuplify(value)
    t = _get(m, "time")
    err = _get(m, "error")
    return Event(index, proc, typ, f, value, line,
                 None if t is _MISSING else t,
                 None if err is _MISSING else err)


def _tuplify(v):
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def normalize(ops):
    """Events from Python op dicts (keys 'process', 'type', 'f', 'value', as
    str or Keyword; type/f as str or Keyword), or Events themselves."""
    out = []
    for i, op in enumerate(ops):
        if isinstance(op, Event):
            out.append(Event(i, op.process, op.type, op.f, op.value,
                             op.line, op.time, op.error))
        else:
            # in-memory ops: "line" is the 1-based position in the history
            out.append(_event_from_map(op, i, i + 1))
    return out


def parse(text, fmt="auto", path=None):
    if fmt == "auto":
        fmt = detect_format(text)
    return parse_log(text, path) if fmt == "log" else parse_edn(text, path)


def load(path, fmt="auto"):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise HistoryError("not UTF-8 text (%s)" % e.reason, path=path)
    return parse(text, fmt, path)


# ------------------------------------------------------------------ pairing

NEMESIS = Keyword("nemesis")


def is_client(process):
    return isinstance(process, int) and not isinstance(process, bool)


def pair(events, fs=None, path=None, warnings=None):
    """Pair invocations with completions.  Returns the list of Operations
    that matter to a linearizability check (ok ops, and non-read info ops),
    in invocation order.  Raw values: read -> completion value; write/cas ->
    invoke value (Jepsen logs often replace an :info completion's value by
    e.g. :timed-out).

    fs: the set of f names a client op may have (None: any).  Events of
    non-client processes (e.g. :nemesis) are ignored.
    """
    if warnings is None:
        warnings = []
    pending = {}                 # process -> invoke Event
    done = []                    # (invoke, completion or None)
    for ev in events:
        if not is_client(ev.process):
            continue
        if fs is not None and ev.f not in fs:
            raise HistoryError("op f :%s is not known to the model "
                               "(expected one of %s)" % (
                                   ev.f, ", ".join(":" + f for f in
                                                   sorted(fs))),
                               ev.line, None, path)
        if ev.type == "invoke":
            prev = pending.pop(ev.process, None)
            if prev is not None:
                warnings.append(
                    "line %s: process %s invoked again while its op from "
                    "line %s is outstanding; treating that op as :info" %
                    (ev.line, ev.process, prev.line))
                done.append((prev, None))
            pending[ev.process] = ev
            continue
        inv = pending.pop(ev.process, None)
        if inv is None:
            raise HistoryError("%s completion by process %s, which has no "
                               "outstanding invoke" % (":" + ev.type,
                                                       ev.process),
                               ev.line, None, path)
        if inv.f != ev.f:
            raise HistoryError("completion :%s does not match the invoke "
                               ":%s of process %s (line %s)" % (
                                   ev.f, inv.f, ev.process, inv.line),
                               ev.line, None, path)
        done.append((inv, ev))
    for inv in pending.values():
        done.append((inv, None))
    done.sort(key=lambda p: p[0].index)

    ops = []
    for inv, comp in done:
        status = "info" if comp is None else comp.type
        if status == "fail":
            continue
        if status == "info" and inv.f == "read":
            continue
        if inv.f == "read":
            value = comp.value
        else:
            value = inv.value if inv.value is not None or comp is None \
                else comp.value
        ops.append(Operation(len(ops), inv.process, inv.f, value, status,
                             inv.index, comp.index if status == "ok" else
                             None, inv.line,
                             comp.line if comp is not None else None,
                             None, inv, comp))
    return ops


def _is_pair(v):
    return isinstance(v, tuple) and len(v) == 2


def keyed_shape(op):
    """Does op's raw value look like an independent [key value] tuple?"""
    inv_v = op.invoke.value if op.invoke is not None else op.value
    if not _is_pair(inv_v):
        return False
    if op.f == "cas":
        return _is_pair(inv_v[1])
    if op.f == "read" and op.complete is not None and \
            op.complete.value is not None:
        return _is_pair(op.complete.value) and \
            op.complete.value[0] == inv_v[0]
    return True


def split_keys(ops, independent="auto", path=None):
    """Split ops by independent key.  Returns {key: [Operation]} with values
    stripped of their key; key None when the history is not independent.

    independent: 'auto' (keyed iff every op's value is a [k v] tuple),
    'yes' or 'no'."""
    if independent == "no" or not ops:
        return {None: ops} if ops else {}
    keyed = all(keyed_shape(o) for o in ops)
    if independent == "yes" and not keyed:
        bad = next(o for o in ops if not keyed_shape(o))
        raise HistoryError("op is not an independent [key value] tuple: " +
                           bad.describe(), bad.call_line, None, path)
    if not keyed:
        return {None: ops}
    out = {}
    for o in ops:
        k = o.invoke.value[0]
        if o.f == "read":
            v = o.value[1] if _is_pair(o.value) else o.value
        else:
            v = o.value[1]
        op = Operation(0, o.process, o.f, v, o.status, o.call, o.ret,
                       o.call_line, o.ret_line, k, o.invoke, o.complete)
        lst = out.setdefault(k, [])
        op.id = len(lst)
        lst.append(op)
    return out

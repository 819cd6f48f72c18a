"""A small EDN reader/writer, sufficient for Jepsen histories.

Python 3 stdlib only.  Mapping of EDN values:

  nil/true/false -> None/True/False     integers (N suffix ok) -> int
  floats (M suffix ok) -> float/Decimal ratios -> fractions.Fraction
  "strings" -> str                      \\c characters -> Char (str subclass)
  :keywords -> Keyword                  symbols -> Symbol
  [vectors] and (lists) -> tuple        #{sets} -> frozenset
  {maps} -> EdnMap (a dict with a .pos attribute: offset of its '{')
  #inst "..." / #uuid "..." -> Tagged(tag, value)
  #some.Record{...} (e.g. #jepsen.history.Op{...}) -> the map itself
  #_ form -> discarded                  ; comments and commas -> whitespace

Errors raise EdnError carrying a 1-based line and column.
"""

import bisect
import re
from decimal import Decimal
from fractions import Fraction

__all__ = ["EdnError", "Keyword", "Symbol", "Char", "Tagged", "EdnMap",
           "loads", "loads_all", "iter_forms", "dumps", "kw"]


class EdnError(ValueError):
    def __init__(self, msg, line=None, col=None):
        self.msg, self.line, self.col = msg, line, col
        where = "" if line is None else "line %d, column %d: " % (line, col)
        super().__init__(where + msg)


class Keyword(object):
    """An EDN keyword.  Interned: Keyword('ok') is Keyword('ok')."""
    __slots__ = ("name",)
    _table = {}

    def __new__(cls, name):
        k = cls._table.get(name)
        if k is None:
            k = object.__new__(cls)
            k.name = name
            cls._table[name] = k
        return k

    def __repr__(self):
        return ":" + self.name

    __str__ = __repr__

    def __reduce__(self):
        return (Keyword, (self.name,))

    def __lt__(self, other):
        return self.name < getattr(other, "name", str(other))


def kw(name):
    return Keyword(name)


class Symbol(object):
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, Symbol) and other.name == self.name

    def __hash__(self):
        return hash(("sym", self.name))

    def __repr__(self):
        return self.name

    __str__ = __repr__


class Char(str):
    """A character literal (\\a); compares equal to the 1-char string."""
    def __repr__(self):
        return "\\" + {"\n": "newline", " ": "space", "\t": "tab",
                       "\r": "return"}.get(str(self), str(self))


class Tagged(object):
    __slots__ = ("tag", "value")

    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return (isinstance(other, Tagged) and other.tag == self.tag
                and other.value == self.value)

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "#%s %s" % (self.tag, dumps(self.value))


class EdnMap(dict):
    __slots__ = ("pos",)


class FrozenMap(frozenset):
    """A map used as a set element or map key (hashable)."""
    def __repr__(self):
        return "{" + ", ".join("%s %s" % (dumps(k), dumps(v))
                               for k, v in self) + "}"


def _hashable(v):
    if isinstance(v, dict):
        return FrozenMap((k, _hashable(x)) for k, x in v.items())
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    return v


_TOKEN = re.compile(r'''
  (?P<ws>(?:[\s,]+|;[^\n]*)+)
 |(?P<str>"[^"\\]*(?:\\.[^"\\]*)*")
 |(?P<open>[\[({]|\#\{)
 |(?P<close>[\])}])
 |(?P<disc>\#_)
 |(?P<special>\#\#(?:Inf|-Inf|NaN)\b)
 |(?P<tag>\#[A-Za-z][^\s,\[\](){}"\\;]*)
 |(?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9A-Fa-f]{4}|\S))
 |(?P<atom>[^\s,\[\](){}"\#;\\][^\s,\[\](){}";\\]*)
''', re.X | re.S)

_INT = re.compile(r"[+-]?\d+N?\Z")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?\Z")
_RATIO = re.compile(r"[+-]?\d+/\d+\Z")
_SYM = re.compile(r"(?:[A-Za-z*!_?$%&=<>.'+\-][\w*!?$%&=<>.'+\-:#/]*|/)\Z")
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r",
          "formfeed": "\f", "backspace": "\b"}
_ESC = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b",
        "f": "\f", "/": "/"}
_STR_ESC = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.S)
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_DISCARD = object()


class _Lines(object):
    def __init__(self, text):
        self.nl = [m.start() for m in re.finditer("\n", text)]

    def linecol(self, pos):
        i = bisect.bisect_left(self.nl, pos)
        start = self.nl[i - 1] + 1 if i else 0
        return i + 1, pos - start + 1


def _unescape(body, lines, pos):
    def rep(m):
        e = m.group(1)
        if e[0] == "u" and len(e) == 5:
            return chr(int(e[1:], 16))
        if e in _ESC:
            return _ESC[e]
        raise EdnError("invalid string escape \\" + e,
                       *lines.linecol(pos + m.start()))
    return _STR_ESC.sub(rep, body) if "\\" in body else body


def _atom(tok, lines, pos):
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    c = tok[0]
    if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
        if _INT.match(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.match(tok):
            return Decimal(tok[:-1]) if tok.endswith("M") else float(tok)
        if _RATIO.match(tok):
            return Fraction(tok)
        raise EdnError("invalid number %r" % tok, *lines.linecol(pos))
    if c == ":":
        name = tok[1:]
        if not name or name.startswith(":") or not _SYM.match(name) and \
                not re.match(r"[\w*!?$%&=<>.'+\-:#/]+\Z", name):
            raise EdnError("invalid keyword %r" % tok, *lines.linecol(pos))
        return Keyword(name)
    if _SYM.match(tok):
        return Symbol(tok)
    raise EdnError("invalid token %r" % tok, *lines.linecol(pos))


def _tagged(tag, value, lines, pos):
    if isinstance(value, dict):          # records: #jepsen.history.Op{...}
        return value
    if tag in ("inst", "uuid"):
        if not isinstance(value, str):
            raise EdnError("#%s expects a string" % tag, *lines.linecol(pos))
    return Tagged(tag, value)


def iter_forms(text):
    """Yield (value, offset) for each top-level form of text."""
    lines = _Lines(text)
    match = _TOKEN.match
    # frame: [opener, items, start_pos, prefixes]; prefixes: list of
    # (kind, payload, pos) applied to the next complete form.
    stack = []
    top_prefixes = []
    pos, n = 0, len(text)
    while pos < n:
        m = match(text, pos)
        if m is None:
            c = text[pos]
            what = "unterminated string" if c == '"' else \
                "unexpected character %r" % c
            raise EdnError(what, *lines.linecol(pos))
        kind = m.lastgroup
        start, pos = pos, m.end()
        if kind == "ws":
            continue
        prefixes = stack[-1][3] if stack else top_prefixes
        if kind == "open":
            stack.append([m.group(), [], start, []])
            continue
        if kind == "disc":
            prefixes.append(("disc", None, start))
            continue
        if kind == "tag":
            prefixes.append(("tag", m.group()[1:], start))
            continue
        if kind == "close":
            c = m.group()
            if not stack:
                raise EdnError("unmatched %r" % c, *lines.linecol(start))
            opener, items, ostart, oprefixes = stack.pop()
            if _CLOSER[opener] != c:
                raise EdnError("mismatched %r: %r opened at line %d, column %d"
                               % ((c, opener) + lines.linecol(ostart)),
                               *lines.linecol(start))
            if oprefixes:
                raise EdnError("%s with no form before %r" % (
                    "#_" if oprefixes[-1][0] == "disc" else
                    "#" + oprefixes[-1][1], c),
                    *lines.linecol(oprefixes[-1][2]))
            if opener == "{":
                if len(items) % 2:
                    raise EdnError("map literal has an odd number of forms",
                                   *lines.linecol(ostart))
                value = EdnMap()
                value.pos = ostart
                it = iter(items)
                for k in it:
                    value[_hashable(k)] = next(it)
            elif opener == "#{":
                value = frozenset(_hashable(x) for x in items)
            else:
                value = tuple(items)
            vstart = ostart
            prefixes = stack[-1][3] if stack else top_prefixes
        elif kind == "str":
            tok = m.group()
            value = _unescape(tok[1:-1], lines, start + 1)
            vstart = start
        elif kind == "atom":
            value = _atom(m.group(), lines, start)
            vstart = start
        elif kind == "char":
            t = m.group()[1:]
            if t in _CHARS:
                value = Char(_CHARS[t])
            elif len(t) == 5 and t[0] == "u":
                value = Char(chr(int(t[1:], 16)))
            else:
                value = Char(t)
            vstart = start
        elif kind == "special":
            value = {"##Inf": float("inf"), "##-Inf": float("-inf"),
                     "##NaN": float("nan")}[m.group()]
            vstart = start
        else:  # pragma: no cover
            raise EdnError("internal: token " + kind, *lines.linecol(start))
        # apply prefixes (innermost = last pushed first)
        while prefixes:
            pk, payload, ppos = prefixes.pop()
            if pk == "disc":
                value = _DISCARD
                break
            value = _tagged(payload, value, lines, ppos)
        if value is _DISCARD:
            continue
        if stack:
            stack[-1][1].append(value)
        else:
            yield value, vstart
    if stack:
        opener, _, ostart, _ = stack[-1]
        raise EdnError("unexpected end of input: %r opened here is never "
                       "closed" % opener, *lines.linecol(ostart))
    if top_prefixes:
        pk, payload, ppos = top_prefixes[-1]
        raise EdnError("unexpected end of input after %s" % (
            "#_" if pk == "disc" else "#" + payload), *lines.linecol(ppos))


def loads_all(text):
    return [v for v, _ in iter_forms(text)]


def loads(text):
    forms = loads_all(text)
    if len(forms) != 1:
        raise EdnError("expected exactly one form, found %d" % len(forms))
    return forms[0]


def linecol(text, pos):
    return _Lines(text).linecol(pos)


# ---------------------------------------------------------------- writer

_STR_OUT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def dumps(v):
    """Serialise a Python value as EDN (str keys of dicts become keywords
    only when passed as Keyword; plain str stays a string)."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (Keyword, Symbol, Tagged, Char)):
        return repr(v)
    if isinstance(v, str):
        return '"' + "".join(_STR_OUT.get(c, c) for c in v) + '"'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "##NaN"
        if v in (float("inf"), float("-inf")):
            return "##Inf" if v > 0 else "##-Inf"
        return repr(v)
    if isinstance(v, Decimal):
        return str(v) + "M"
    if isinstance(v, Fraction):
        return "%d/%d" % (v.numerator, v.denominator)
    if isinstance(v, dict):
        return "{" + ", ".join(dumps(k) + " " + dumps(x)
                               for k, x in v.items()) + "}"
    if isinstance(v, FrozenMap):
        return repr(v)
    if isinstance(v, (set, frozenset)):
        return "#{" + " ".join(dumps(x) for x in v) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(dumps(x) for x in v) + "]"
    raise TypeError("cannot serialise %r as EDN" % (v,))

"""auditchain: the audit ledger's canonical encoding v1 and hash
(docs/audit.md, "Canonical encoding v1 and the hash"), and a verifier over
warden.v1.AuditEntry messages.  An independent reimplementation of
domain/audit_chain.c from the document, so the Jepsen suite does not trust
the code it checks."""

import hashlib
import struct

TAG = b"warden.audit.entry.v1"
ZERO = b"\0" * 32


def _str(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def encode(e):
    return b"".join([
        _str(TAG),
        struct.pack(">QQQ", e.seq, e.raft_index, e.cluster_time_ms),
        _str(e.principal_name),
        struct.pack(">II", e.principal_role, e.action),
        _str(e.target),
        struct.pack(">II", e.outcome, e.code & 0xFFFFFFFF),
        struct.pack(">Q", e.count),
        _str(e.detail),
        bytes(e.request_digest).ljust(32, b"\0")[:32] if len(e.request_digest) == 32
        else b"\xff" * 33,  # wrong length can never verify
        bytes(e.prev_hash) if len(e.prev_hash) == 32 else b"\xff" * 33,
    ])


def entry_hash(e):
    return hashlib.sha256(encode(e)).digest()


def verify(entries, anchor=ZERO, first_seq=1):
    """[] when the chain verifies, else a list of problem strings (the
    first few)."""
    bad = []
    prev = anchor
    expect = first_seq
    for e in entries:
        h = entry_hash(e)
        if h != bytes(e.entry_hash):
            bad.append("seq %d: entry_hash mismatch" % e.seq)
        if e.seq != expect:
            bad.append("seq %d: expected seq %d" % (e.seq, expect))
        if bytes(e.prev_hash) != prev:
            bad.append("seq %d: prev_hash does not link" % e.seq)
        prev = bytes(e.entry_hash)
        expect = e.seq + 1
        if len(bad) >= 10:
            break
    return bad

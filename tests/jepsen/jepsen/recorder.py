"""recorder: the run's history, written as EDN op maps one per line while
the test runs (a crash still leaves the history so far on disk).

Times are nanoseconds of CLOCK_MONOTONIC since the recorder started.
"""

import threading
import time

from . import edn
from .edn import Keyword as K


def kwify(v):
    """Op values: str stays str; tuples/lists recurse; dict keys -> keywords."""
    if isinstance(v, dict):
        return {K(k) if isinstance(k, str) else k: kwify(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [kwify(x) for x in v]
    return v


class Recorder:
    def __init__(self, path):
        self.path = path
        self.f = open(path, "w")
        self.lock = threading.Lock()
        self.t0 = time.monotonic_ns()
        self.ops = []          # python dicts, for the checkers and report

    def now(self):
        return time.monotonic_ns() - self.t0

    def add(self, process, typ, f, value, **extra):
        op = {"process": process, "type": typ, "f": f, "value": value}
        op.update(extra)
        with self.lock:
            op["time"] = self.now()
            op["index"] = len(self.ops)
            self.ops.append(op)
            m = {K("process"): K(process) if isinstance(process, str) else process,
                 K("type"): K(typ), K("f"): K(f), K("value"): kwify(value),
                 K("time"): op["time"], K("index"): op["index"]}
            for k, x in extra.items():
                m[K(k)] = K(x) if k == "error" and isinstance(x, str) else kwify(x)
            self.f.write(edn.dumps(m) + "\n")
            self.f.flush()
        return op

    def close(self):
        with self.lock:
            if not self.f.closed:
                self.f.close()

"""Instructions executed by one steady-state call of each recommended
implementation at the ``small`` tier (or of the calls named by
``LENSKERN_COUNT_CALLS``: ``counts.CALLS_VARIABLE``), counted under
Valgrind's callgrind (``lenskern.observatory.counts``): a deterministic
signal beside the timings, the calls counted side by side, one per CPU.
One thread, and the AVX2 code paths: Valgrind serialises threads and does
not model AVX-512. n/a where Valgrind is missing or the machine is not
x86-64 Linux."""

import hashlib
import json
import sys

from .common import (
    _cache_folder,
    _digest,
    _package,
    _sources,
    _write_atomically,
    checkout_module,
    library_versions,
    one_thread,
)

#: The checkout's counting tool, not the installed commit's: asv runs this
#: suite against older commits too, whose lenskern may predate it.
counts = checkout_module("lenskern/observatory/counts.py")

#: The tier counted: counts are deterministic, so one size says whether a
#: commit changed the work; small keeps each count under a minute.
TIER = "small"


class Instructions:
    """One count per call: each kernel's first choice in recommend.RECOMMENDED,
    or the calls named by counts.CALLS_VARIABLE."""

    param_names = ["call"]
    params = [counts.calls()]
    timeout = 3600  # setup_cache counts every call
    number = 1
    repeat = 1

    def setup_cache(self):
        if not one_thread() or counts.supported():
            return {}
        # asv runs setup_cache again for every round of a run (the PR check
        # runs five a side), and counting the selection takes minutes; the
        # counts are deterministic, so each is kept, keyed by everything it
        # depends on: the code counted, the counting tool, the calls, the
        # tier, the Python and the numerical libraries' versions.
        path = _cache_folder() / f"counts-{_counts_key(self.params[0])}.json"
        if path.exists():
            return json.loads(path.read_text())
        found = counts.count_many(self.params[0], TIER)
        counted = {call: result for call, result in found.items() if isinstance(result, dict)}
        _write_atomically(path, lambda partial: partial.write_text(json.dumps(counted)))
        return counted

    def setup(self, found, call):
        if not one_thread():
            raise NotImplementedError("instructions are counted on one thread")
        reason = counts.supported()
        if reason:
            raise NotImplementedError(reason)
        if call not in found:
            raise NotImplementedError(f"{call}: not counted here")

    def track_instructions(self, found, call):
        """Instructions of one steady-state call (callgrind's Ir)."""
        return found[call]["instructions"]

    track_instructions.unit = "instructions"

    def track_estimated_cycles(self, found, call):
        """callgrind's cycle estimate of the same call: Ir + 10 L1 + 100 LL misses."""
        return found[call]["estimated_cycles"]

    track_estimated_cycles.unit = "cycles"


def _counts_key(calls: list[str]) -> str:
    package = _package()
    tool = (counts.__file__ and open(counts.__file__, "rb").read()) or b""
    parts = [_digest(_sources(package), package), hashlib.sha256(tool).hexdigest(), ",".join(calls), TIER,
             sys.executable, *library_versions()]  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]

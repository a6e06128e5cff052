"""Instructions executed by one steady-state call of each recommended
implementation at the ``small`` tier (or of the calls named by
``LENSKERN_COUNT_CALLS``: ``counts.CALLS_VARIABLE``), counted under
Valgrind's callgrind (``lenskern.observatory.counts``): a deterministic
signal beside the timings, the calls counted side by side, one per CPU.
One thread, and the AVX2 code paths: Valgrind serialises threads and does
not model AVX-512. n/a where Valgrind is missing or the machine is not
x86-64 Linux."""

from .common import checkout_module, one_thread

#: The checkout's counting tool, not the installed commit's: asv runs this
#: suite against older commits too, whose lenskern may predate it.
counts = checkout_module("lenskern/observatory/counts.py")

#: The tier counted: counts are deterministic, so one size says whether a
#: commit changed the work; small keeps each count under a minute.
TIER = "small"


class Instructions:
    """One count per call: each kernel's first choice in registry.RECOMMENDED,
    or the calls named by counts.CALLS_VARIABLE."""

    param_names = ["call"]
    params = [counts.calls()]
    timeout = 3600  # setup_cache counts every call
    number = 1
    repeat = 1

    def setup_cache(self):
        if not one_thread() or counts.supported():
            return {}
        found = counts.count_many(self.params[0], TIER)
        return {call: result for call, result in found.items() if isinstance(result, dict)}

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

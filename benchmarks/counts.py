"""Instructions executed by one steady-state call of each recommended
implementation at the ``small`` tier, counted under Valgrind's callgrind
(``lenskern.observatory.counts``): a deterministic signal beside the
timings. One thread, and the AVX2 code paths: Valgrind serialises threads
and does not model AVX-512. n/a where Valgrind is missing or the machine is
not x86-64 Linux."""

from lenskern import registry
from lenskern.observatory import counts

from .common import one_thread

#: The tier counted: counts are deterministic, so one size says whether a
#: commit changed the work; small keeps each count under a minute.
TIER = "small"


class Instructions:
    """One count per kernel: its first choice in registry.RECOMMENDED."""

    param_names = ["call"]
    params = [
        [f"{kernel}/{registry.RECOMMENDED[kernel][0]}" for kernel in registry.KERNELS + registry.EXAMPLES]
    ]
    timeout = 3600  # setup_cache counts every call: about a minute each
    number = 1
    repeat = 1

    def setup_cache(self):
        if not one_thread() or counts.supported():
            return {}
        found = {}
        for (call,) in zip(*self.params):
            kernel, name = call.split("/")
            try:
                found[call] = counts.count(kernel, name, TIER)
            except (RuntimeError, ValueError) as error:  # a backend missing here: n/a
                print(f"{call}: {error}")
        return found

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

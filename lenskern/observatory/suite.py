"""What the observatory knows of the asv suite in ``benchmarks/``: which area
module declares each kernel's classes, and what the classes are called.

Each kernel has a class ``<Kernel>`` (time per call, every thread setting)
and ``<Kernel>Profile`` (memory, first call, error; one thread), made in
``benchmarks/<area>.py`` from its ``Kernel`` record under the names here
(``benchmarks.common.kernel_classes``), which the report, the seeds' rounds
and the alert read asv's results by; ``tests/observatory/test_benchmarks.py``
holds the two together.
"""

from __future__ import annotations

import os
import re

from lenskern import problems, registry

#: area module of benchmarks/ -> the kernels whose classes it declares
#: (each kernel's ``area`` in registry.DECLARED).
AREAS = {
    area: tuple(k.name for k in registry.DECLARED if k.area == area)
    for area in dict.fromkeys(k.area for k in registry.DECLARED)
}
#: Suffix of the class with a kernel's memory, first-call and error benchmarks.
PROFILE = "Profile"
#: The comma list of tiers a benchmark process measures at (every other tier
#: n/a). ``benchmarks/common.py`` reads it with copies of the two names
#: below, since asv runs that file against older commits of this package.
TIERS_VARIABLE = "LENSKERN_BENCH_TIERS"
#: The tier that turns the streamed benchmarks on (``benchmarks/stream.py``):
#: a name for the variable, not a problem size.
STREAM_TIER = "stream"


def class_name(kernel: str) -> str:
    """The benchmark class of a kernel: ``curvature_matrix`` -> ``CurvatureMatrix``."""
    return "".join(part.title() for part in kernel.split("_"))


def area(kernel: str) -> str:
    """The benchmark module that declares ``kernel``'s classes."""
    (found,) = [name for name, kernels in AREAS.items() if kernel in kernels]
    return found


def kernel_of(cls: str) -> str:
    """The kernel a benchmark class measures (``CurvatureMatrixProfile`` ->
    ``curvature_matrix``); a class of no kernel (``Likelihood``) is its own name."""
    base = cls.removesuffix(PROFILE)
    by_class = {class_name(k): k for kernels in AREAS.values() for k in kernels}
    return by_class.get(base, base)


def time_regex(kernels) -> str:
    """asv's ``-b`` regex for the time_call benchmarks of these kernels (no
    ``$``: asv matches the regex against names with their parameters too)."""
    names = "|".join(sorted(f"{area(k)}\\.{class_name(k)}" for k in kernels))
    return rf"^({names})\.time_call"


def check_tiers(tiers, argument: str) -> list[str]:
    """``tiers`` as a list, each a problem tier or ``stream``; a ValueError
    naming ``argument`` (where the user wrote them) otherwise: a run at an
    unknown tier would quietly measure nothing."""
    tiers = list(tiers)
    known = [*problems.PRESETS, STREAM_TIER]
    unknown = [t for t in tiers if t not in known]
    expected = f"expected a comma list of {', '.join(known)}"
    if not tiers:
        raise ValueError(f"{argument}: no tier given; {expected}")
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(
            f"{argument}: {names} {'is not a tier' if len(unknown) == 1 else 'are not tiers'}; {expected}"
        )
    return tiers


def selected_tiers(default: str) -> list[str]:
    """The tiers ``LENSKERN_BENCH_TIERS`` names, ``default`` (a comma list) when it is unset."""
    value = os.environ.get(TIERS_VARIABLE, default)
    return check_tiers([t for t in value.split(",") if t], TIERS_VARIABLE)


def tier_regex(tiers) -> str:
    """asv's ``-b`` regex for a run at ``tiers``: every benchmark at those
    tiers, and those that take no tier (``counts``, ``stream``).

    Every kernel benchmark takes every problem tier as a parameter
    (``benchmarks/common.py``), and asv keeps a benchmark's earlier results
    at the parameters a run's regex leaves out: a run narrowed so adds its
    tiers beside those measured before on that commit. Raises ValueError
    for a name that is no tier (:func:`check_tiers`)."""
    tiers = check_tiers(tiers, "tiers")
    every = "|".join(re.escape(t) for t in problems.PRESETS)
    chosen = "|".join(re.escape(t) for t in tiers)
    return rf"^(?!.*'({every})'\)$)|'({chosen})'\)$"


#: asv's names of the two instruction-count benchmarks (``benchmarks/counts.py``).
COUNT_METHODS = ("counts.Instructions.track_instructions", "counts.Instructions.track_estimated_cycles")


def count_name(call: str, method: str = COUNT_METHODS[0]) -> str:
    """asv's name of a count of ``call`` (``kernel/implementation``)."""
    return f"{method}({call!r})"


def counted_calls(calls, bench: str) -> list[str]:
    """The ``calls`` whose instruction counts asv's regex ``bench`` selects."""
    return [call for call in calls if any(re.search(bench, count_name(call, m)) for m in COUNT_METHODS)]


def all_of(*regexes: str | None) -> str:
    """One asv ``-b`` regex that finds what every one of ``regexes`` finds
    (asv's several ``-b`` find what any one finds); None ones are left out."""
    return "^" + "".join(f"(?=.*?(?:{regex}))" for regex in regexes if regex)

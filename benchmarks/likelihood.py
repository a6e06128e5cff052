"""The likelihood pipeline: dirty image, reconstruction and the log evidence,
and the log evidence per call of a sampler (``lk.Likelihood``)."""

import lenskern as lk

from .common import (
    ALL_TIERS,
    TIMER,
    checkout_facts,
    implementation,
    kernel_classes,
    lacks_feature,
    manifest,
    skip_reason,
    skip_unselected_tier,
)

# <Kernel> and <Kernel>Profile for each kernel the registry places here.
globals().update(kernel_classes(__name__))


def _likelihood_curvatures() -> list[str]:
    """The curvature implementations a Likelihood can run: those that need no
    W and no dense mapping, which it never forms."""
    has = set(checkout_facts()["likelihood_inputs"]) | {"w_offsets", "native_index", "dirty_image"}
    return [name for name, inputs in manifest()["curvature_matrix"].items() if set(inputs) <= has]


class Likelihood:
    """One ``lk.Likelihood.log_evidence`` call, the data's parts precomputed,
    per curvature implementation: ``numba.offsets`` is the seeds' algorithm
    (offset-table curvature, then Cholesky), the others lenskern's."""

    param_names = ["implementation", "tier"]
    params = [_likelihood_curvatures(), list(ALL_TIERS)]
    timeout = 600
    warmup_time = 0
    repeat = (1, 5, 10.0)
    number = 0
    rounds = 1
    timer = staticmethod(TIMER)

    def setup(self, implementation_name, tier):
        skip_unselected_tier(tier)
        implementation("curvature_matrix", implementation_name)  # n/a where it cannot run
        try:
            problem = lk.make_problem(tier)
            reason = skip_reason("curvature_matrix", implementation_name, tier)
            if reason:
                raise NotImplementedError(reason)
            self.likelihood = lk.Likelihood(impl={"curvature_matrix": implementation_name}, **problem)
        except (AttributeError, ImportError, KeyError) as error:  # a commit before Likelihood or this tier
            raise lacks_feature(error) from None
        self.problem = problem
        self.likelihood.log_evidence(**problem)  # compiles

    def time_call(self, implementation, tier):
        """One evidence for a new mapping and coefficient: D, F, H, two Cholesky."""
        self.likelihood.log_evidence(**self.problem)

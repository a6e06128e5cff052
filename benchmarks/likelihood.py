"""The likelihood pipeline: dirty image, reconstruction and the log evidence,
and the log evidence per call of a sampler (``lk.Likelihood``)."""

import lenskern as lk

from .common import TIERS, _implementation, generate, skip_reason

generate(("dirty_image", "reconstruction", "noise_normalization", "log_evidence"), globals())


class Likelihood:
    """One ``lk.Likelihood.log_evidence`` call, the data's parts precomputed,
    per curvature implementation: ``numba.offsets`` is the seeds' algorithm
    (offset-table curvature, then Cholesky), the others lenskern's."""

    param_names = ["implementation", "tier"]
    params = [["numba.offsets", "numba.tiled", "numpy.fft"], list(TIERS)]
    timeout = 600
    warmup_time = 0
    repeat = (1, 5, 10.0)
    number = 0
    rounds = 1

    def setup(self, implementation, tier):
        curvature = _implementation("curvature_matrix", implementation)  # n/a if its backend is missing
        problem = lk.make_problem(tier)
        reason = skip_reason(curvature, tier, problem.sizes)
        if reason:
            raise NotImplementedError(reason)
        self.likelihood = lk.Likelihood(impl={"curvature_matrix": implementation}, **problem)
        self.problem = problem
        self.likelihood.log_evidence(**problem)  # compiles

    def time_call(self, implementation, tier):
        """One evidence for a new mapping and coefficient: D, F, H, two Cholesky."""
        self.likelihood.log_evidence(**self.problem)

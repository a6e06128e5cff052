"""The log evidence assembled from its parts (SPEC section 2's last formula),
in one neutral module: the NumPy backend's evidence kernels and
:class:`lenskern.Likelihood` both finish with it, so neither imports the
other. The formula is ``reference.log_evidence``'s."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def evidence_from_parts(curvature, regularization, data, chi2_data, noise_normalization) -> float:
    """SPEC section 2's log evidence from F, H, D and the data's two constants.

    Cost: 2 S^3 / 3 flops (two Cholesky factorisations) + 2 S^2; memory S^2.
    """
    # check_finite=False: F, H and D come from validated inputs, and the
    # checks cost a third of the two factorisations at S = 256.
    chol_h = scipy.linalg.cholesky(regularization, lower=True, check_finite=False)
    chol_fh = scipy.linalg.cho_factor(curvature + regularization, lower=True, check_finite=False)
    source = scipy.linalg.cho_solve(chol_fh, data, check_finite=False)
    return float(
        -0.5 * (chi2_data - source @ data + noise_normalization)
        + np.sum(np.log(np.diag(chol_h)))
        - np.sum(np.log(np.diag(chol_fh[0])))
    )


def chi2_data(visibilities, noise) -> float:
    """sum |V_k|^2 / sigma_k^2, the data's term of the log evidence. Cost: 4 K flops."""
    return float(np.sum((visibilities.real**2 + visibilities.imag**2) / noise**2))

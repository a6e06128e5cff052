"""The log evidence as a sampler evaluates it: precompute once, call many times.

A lens-model sampler evaluates the evidence thousands of times on the same
data: only the mapping (``pix_indexes``, ``pix_weights``, ``n_sources``), the
source's neighbours and the coefficient change. The offset table, the dirty
image, chi2 of the data and the noise normalization do not; at the science
size they are the O(K) part (10^7 visibilities), so :class:`Likelihood`
computes them once, with the recommended implementations, and each call costs
only the mapping-dependent kernels:

    like = lk.Likelihood(**problem)          # offset table, dirty image: once
    like.log_evidence(**problem)             # per call: D, F, H, two Cholesky
    like.log_evidence(pix_indexes=..., pix_weights=..., n_sources=...,
                      neighbors=..., neighbors_sizes=..., coefficient=...)

The math is SPEC section 2 (``reference.log_evidence``); this module adds no
formula of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lenskern import registry, validate
from lenskern.problems import crop_to_mask

#: What the precomputed part reads, and what each call reads.
DATA_INPUTS = ("uv", "noise", "visibilities", "grid", "pixel_scale", "shape_native", "native_index")
CALL_INPUTS = ("pix_indexes", "pix_weights", "n_sources", "neighbors", "neighbors_sizes", "coefficient")
#: The kernels a Likelihood computes, whose implementation ``impl`` may name.
STAGES = (
    "w_offsets", "dirty_image", "noise_normalization",
    "data_vector", "curvature_matrix", "regularization_matrix",
)  # fmt: skip


class Likelihood:
    """The log evidence with its data-only parts precomputed.

    Parameters
    ----------
    **inputs
        Any superset of ``DATA_INPUTS`` (a whole problem will do); validated
        once, here.
    impl
        Optional ``{kernel: implementation name}`` overriding the recommended
        ones, for the kernels in ``STAGES``.

    Cost: once, the offset table and dirty image (O(K) with the NUFFT), chi2
    and the noise normalization (O(K)); per call, see :meth:`log_evidence`.
    The offset table spans the mask's bounding box (:func:`crop_to_mask`):
    ``w_offsets`` and ``native_index`` here are on that cropped grid,
    ``shape_native`` its size.
    """

    def __init__(self, impl: dict[str, str] | None = None, **inputs: Any) -> None:
        missing = [name for name in DATA_INPUTS if name not in inputs]
        if missing:
            raise TypeError(f"Likelihood needs input(s) {', '.join(map(repr, missing))}")
        self.impl = dict(impl or {})
        unknown = sorted(set(self.impl) - set(STAGES))
        if unknown:
            raise ValueError(f"impl: names kernel(s) {unknown}; a Likelihood computes {list(STAGES)}")
        self._chosen: dict[str, registry.Implementation] = {}
        from lenskern.backends import numpy as numpy_backend  # here: `import lenskern` loads no backend

        self._evidence_from_parts = numpy_backend.evidence_from_parts
        data = validate.check({name: inputs[name] for name in DATA_INPUTS})
        # The offset table on the grid cropped to the mask's bounding box: W
        # depends on pixel offsets only, so the curvature is the same from a
        # smaller table. The dirty image on the original grid and data: its
        # phases depend on absolute positions.
        cropped = crop_to_mask({name: data[name] for name in ("native_index", "shape_native")})
        self.native_index = cropped["native_index"]
        self.shape_native = cropped["shape_native"]
        self.w_offsets = np.asarray(self._compute("w_offsets", {**data, **cropped}))
        self.dirty_image = np.asarray(self._compute("dirty_image", data))
        self.chi2_data = numpy_backend.chi2_data(data["visibilities"], data["noise"])
        self.noise_normalization = float(self._compute("noise_normalization", data))

    def _compute(self, kernel: str, inputs: dict[str, Any]) -> Any:
        chosen = self._chosen.get(kernel)
        if chosen is None:
            name = self.impl.get(kernel)
            chosen = registry.implementation(kernel, name) if name else registry.recommended(kernel, inputs)
            missing = [n for n in chosen.inputs if n not in inputs]
            if missing:  # e.g. an implementation that needs W, which a Likelihood never forms
                raise ValueError(f"impl: {chosen.name} needs {missing}, which a Likelihood does not have")
            self._chosen[kernel] = chosen
        # Inputs were validated once, by the caller: call the function itself.
        return chosen.function(**{n: inputs[n] for n in chosen.inputs})

    def log_evidence(self, **inputs: Any) -> float:
        """The log evidence for a new mapping, neighbours and coefficient.

        Takes any superset of ``CALL_INPUTS``; only those are validated.

        Cost: the chosen curvature implementation's (``registry.RECOMMENDED``
        or ``impl``; its docstring and ``Implementation.cost`` say), M B for
        D, S P for H and 2 S^3 / 3 for the two Cholesky factorisations.
        """
        missing = [name for name in CALL_INPUTS if name not in inputs]
        if missing:
            raise TypeError(f"log_evidence needs input(s) {', '.join(map(repr, missing))}")
        given = validate.check({name: inputs[name] for name in CALL_INPUTS})
        if len(given["pix_indexes"]) != len(self.native_index):
            raise ValueError(
                f"pix_indexes: has {len(given['pix_indexes'])} rows, but the data have "
                f"M = {len(self.native_index)} image pixels"
            )
        given.update(w_offsets=self.w_offsets, native_index=self.native_index, dirty_image=self.dirty_image)
        data = self._compute("data_vector", given)
        curvature = self._compute("curvature_matrix", given)
        regularization = self._compute("regularization_matrix", given)
        return self._evidence_from_parts(
            np.asarray(curvature), np.asarray(regularization), np.asarray(data),
            self.chi2_data, self.noise_normalization,
        )  # fmt: skip

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

Data too large for memory are summed from a chunked store instead
(:mod:`lenskern.store`, :mod:`lenskern.stream`), on this machine or a Dask
cluster:

    like = lk.Likelihood.from_store("obs.zarr", **geometry)   # chunk by chunk
    like = lk.Likelihood.from_store("obs.zarr", client=client, **geometry)

The math is SPEC section 2 (``reference.log_evidence``); this module adds no
formula of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lenskern import recommend, registry, validate
from lenskern.problems import crop_to_mask

#: What the precomputed part reads, and what each call reads.
DATA_INPUTS = ("uv", "noise", "visibilities", "grid", "pixel_scale", "shape_native", "native_index")
CALL_INPUTS = ("pix_indexes", "pix_weights", "n_sources", "neighbors", "neighbors_sizes", "coefficient")
#: The kernels a Likelihood computes, whose implementation ``impl`` may name.
STAGES = (
    "w_offsets", "dirty_image", "noise_normalization",
    "data_vector", "curvature_matrix", "regularization_matrix",
)  # fmt: skip
#: The stages of each call: all ``impl`` may name in a Likelihood made from parts.
CALL_STAGES = STAGES[3:]


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

    Raises
    ------
    TypeError
        A data input missing, or a wrongly typed one.
    ValueError
        A bad input (named) or a bad ``impl``, found here rather than at the
        first call.

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
        evidence = self._setup(impl, STAGES)
        # A mask given beside native_index must be the same pixels (validate checks the pair).
        given = DATA_INPUTS + (("mask",) if "mask" in inputs else ())
        data = validate.check({name: inputs[name] for name in given})
        # The offset table on the grid cropped to the mask's bounding box: W
        # depends on pixel offsets only, so the curvature is the same from a
        # smaller table. The dirty image on the original grid and data: its
        # phases depend on absolute positions.
        cropped = crop_to_mask({name: data[name] for name in ("native_index", "shape_native")})
        self.native_index = cropped["native_index"]
        self.shape_native = cropped["shape_native"]
        self.w_offsets = np.asarray(self._compute("w_offsets", {**data, **cropped}))
        self.dirty_image = np.asarray(self._compute("dirty_image", data))
        self.chi2_data = evidence.chi2_data(data["visibilities"], data["noise"])
        self.noise_normalization = float(self._compute("noise_normalization", data))

    def _setup(self, impl: dict[str, str] | None, stages: tuple[str, ...]) -> Any:
        if impl is not None and not isinstance(impl, dict):
            raise TypeError(
                f"impl: expected a dict {{kernel: implementation name}}, e.g. "
                f"{{'curvature_matrix': 'numba.tiled'}}, got {type(impl).__name__}"
            )
        self.impl = dict(impl or {})
        unknown = sorted(map(str, set(self.impl) - set(stages)))
        if unknown:
            raise ValueError(f"impl: names kernel(s) {unknown}; this Likelihood computes {list(stages)}")
        self._chosen: dict[str, registry.Implementation] = {}
        for kernel, name in self.impl.items():  # here, not at the first call
            if not isinstance(name, str):
                raise TypeError(
                    f"impl: {kernel}'s implementation must be a name (str), got {type(name).__name__}"
                )
            self._chosen[kernel] = registry.implementation(kernel, name)
        from lenskern import evidence  # here: `import lenskern` loads no SciPy

        self._evidence_from_parts = evidence.evidence_from_parts
        return evidence

    @classmethod
    def from_parts(
        cls,
        *,
        native_index: Any,
        w_offsets: Any,
        dirty_image: Any,
        chi2_data: float,
        noise_normalization: float,
        impl: dict[str, str] | None = None,
    ) -> Likelihood:
        """A Likelihood from data parts computed elsewhere (a
        :class:`lenskern.stream.Partial`'s ``parts()``); ``impl`` may name the
        per-call kernels (``CALL_STAGES``)."""
        like = cls.__new__(cls)
        like._setup(impl, CALL_STAGES)
        checked = validate.check(
            dict(native_index=native_index, w_offsets=w_offsets, dirty_image=dirty_image)
        )
        # As the constructor does: the table cropped to the mask's bounding
        # box, the central block of the full one (W reads offsets only).
        ny, nx = ((n + 1) // 2 for n in checked["w_offsets"].shape)
        cropped = crop_to_mask({"native_index": checked["native_index"], "shape_native": (ny, nx)})
        cy, cx = cropped["shape_native"]
        like.native_index = cropped["native_index"]
        like.shape_native = cropped["shape_native"]
        like.w_offsets = np.ascontiguousarray(
            checked["w_offsets"][ny - cy : ny + cy - 1, nx - cx : nx + cx - 1]
        )
        like.dirty_image = checked["dirty_image"]
        like.chi2_data, like.noise_normalization = float(chi2_data), float(noise_normalization)
        for name in ("chi2_data", "noise_normalization"):
            if not np.isfinite(getattr(like, name)):
                raise ValueError(f"{name}: must be finite, got {getattr(like, name)!r}")
        return like

    @classmethod
    def from_store(
        cls,
        store: Any,
        *,
        chunk: int | None = None,
        client: Any = None,
        start: Any = None,
        progress: bool | None = None,
        impl: dict[str, str] | None = None,
        **geometry: Any,
    ) -> Likelihood:
        """The data parts summed from a visibility store, chunk by chunk.

        ``store``: a :class:`lenskern.store.VisibilityStore` or its path;
        ``geometry``: ``shape_native``, ``pixel_scale``, ``native_index`` (or
        ``mask``), in any superset. Without ``client`` the chunks are summed
        here (:func:`lenskern.stream.accumulate`); with a
        ``dask.distributed.Client``, on its workers
        (:func:`lenskern.cluster.accumulate`). ``chunk``, ``start`` and
        ``progress`` are theirs; bad data raise their
        :class:`lenskern.stream.ChunkError`, which keeps the sums done.

        Cost: the NUFFT per chunk (:class:`lenskern.stream.ChunkTransform`);
        memory: about two chunks plus the table, whatever K.
        """
        if client is None:
            from lenskern.stream import accumulate
        else:
            from lenskern.cluster import accumulate

            geometry["client"] = client
        partial = accumulate(store, chunk=chunk, start=start, progress=progress, **geometry)
        return cls.from_parts(**partial.parts(), impl=impl)

    def _compute(self, kernel: str, inputs: dict[str, Any]) -> Any:
        chosen = self._chosen.get(kernel) or recommend.recommended(kernel, inputs)
        missing = [n for n in chosen.inputs if n not in inputs]
        if missing:  # e.g. an implementation that needs W, which a Likelihood never forms
            raise ValueError(f"impl: {chosen.name} needs {missing}, which a Likelihood does not have")
        self._chosen[kernel] = chosen
        # Inputs were validated once, by the caller: run on them as they are.
        return chosen.run(inputs)

    def log_evidence(self, **inputs: Any) -> float:
        """The log evidence for a new mapping, neighbours and coefficient.

        Takes any superset of ``CALL_INPUTS``; only those are validated.

        Returns
        -------
        float
            The log evidence (SPEC section 2).

        Raises
        ------
        TypeError
            A call input missing, or a wrongly typed one.
        ValueError
            A bad input (named), or a mapping of another grid.
        numpy.linalg.LinAlgError
            F + H not positive definite.

        Cost: the chosen curvature implementation's (``recommend.RECOMMENDED``
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
        value = self._evidence_from_parts(
            np.asarray(curvature), np.asarray(regularization), np.asarray(data),
            self.chi2_data, self.noise_normalization,
        )  # fmt: skip
        if not np.isfinite(value):
            raise ValueError(
                "log_evidence: not finite for these inputs (a near-singular F + H, or an overflow)"
            )
        return value

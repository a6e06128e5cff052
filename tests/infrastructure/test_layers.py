"""The architecture at a glance, asserted: lenskern's modules in layers,
each importing only the layers below it (grimp reads the import graph,
lazy imports inside functions included). The package's ``__init__`` is the
facade over all of them and is left out."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")

#: Highest first. A module may import those below it, never those above.
LAYERS = (
    "observatory",  # benchmarks, alerts, the site: reads lenskern, never read by it
    "__main__",  # the command line
    "likelihood",  # the sampler's evidence, in memory or from a store
    "cluster",  # the stream's sums on Dask workers
    "stream | uvfits",  # the data parts summed chunk by chunk; UVFITS files into stores
    "backends",  # the implementations, one module (or package) per backend
    "store | agreement",  # visibilities on disk; an answer against the reference's, to its tolerance
    "problems | evidence | recommend | chunk",  # inputs generated; evidence from its parts; which impl
    # runs; a chunk of visibilities made ready for a NUFFT
    "registry",  # implementations declared and found
    "validate",  # inputs checked
    "conventions | kernels | threads | _commit",  # SPEC's constants; kernels declared; thread pools; commit
)


def test_no_module_imports_a_higher_layer():
    graph = grimp.build_graph("lenskern")
    layers = [grimp.Layer(*layer.split(" | "), independent=True) for layer in LAYERS]
    illegal = graph.find_illegal_dependencies_for_layers(layers=layers, containers={"lenskern"})
    assert not illegal, "\n".join(
        sorted(f"{d.importer} imports {d.imported}, a layer above it" for d in illegal)
    )


def test_every_module_is_in_a_layer():
    graph = grimp.build_graph("lenskern")
    placed = {name for layer in LAYERS for name in layer.split(" | ")}
    top = {module.split(".")[1] for module in graph.modules if module.count(".") >= 1}
    assert top <= placed, f"modules in no layer: {sorted(top - placed)}"

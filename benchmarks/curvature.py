"""The mapping, the data vector, the curvature and the regularization matrices."""

from .common import generate

generate(("mapping_matrix", "data_vector", "curvature_matrix", "regularization_matrix"), globals())

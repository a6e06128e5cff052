"""The mapping, the data vector, the curvature and the regularization matrices."""

from .common import KernelProfile, KernelTime


class MappingMatrix(KernelTime):
    kernel = "mapping_matrix"


class MappingMatrixProfile(KernelProfile):
    kernel = "mapping_matrix"


class DataVector(KernelTime):
    kernel = "data_vector"


class DataVectorProfile(KernelProfile):
    kernel = "data_vector"


class CurvatureMatrix(KernelTime):
    kernel = "curvature_matrix"


class CurvatureMatrixProfile(KernelProfile):
    kernel = "curvature_matrix"


class RegularizationMatrix(KernelTime):
    kernel = "regularization_matrix"


class RegularizationMatrixProfile(KernelProfile):
    kernel = "regularization_matrix"

"""The mapping, the data vector, the curvature and the regularization matrices."""

from .common import kernel_classes

# <Kernel> and <Kernel>Profile for each kernel the registry places here.
globals().update(kernel_classes(__name__))

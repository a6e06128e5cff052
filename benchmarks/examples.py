"""The seeds' small JIT examples at the seeds' 5,000,000 elements."""

from .common import kernel_classes

# <Kernel> and <Kernel>Profile for each kernel the registry places here.
globals().update(kernel_classes(__name__))

"""The offset table and the w-tilde matrix."""

from .common import kernel_classes

# <Kernel> and <Kernel>Profile for each kernel the registry places here.
globals().update(kernel_classes(__name__))

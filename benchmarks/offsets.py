"""The offset table and the w-tilde matrix."""

from .common import KernelProfile, KernelTime


class WTilde(KernelTime):
    kernel = "w_tilde"


class WTildeProfile(KernelProfile):
    kernel = "w_tilde"


class WOffsets(KernelTime):
    kernel = "w_offsets"


class WOffsetsProfile(KernelProfile):
    kernel = "w_offsets"


class WTildeFromOffsets(KernelTime):
    kernel = "w_tilde_from_offsets"


class WTildeFromOffsetsProfile(KernelProfile):
    kernel = "w_tilde_from_offsets"

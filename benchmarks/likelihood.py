"""The likelihood pipeline: dirty image, reconstruction and the log evidence."""

from .common import generate

generate(("dirty_image", "reconstruction", "noise_normalization", "log_evidence"), globals())

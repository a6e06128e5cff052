"""The offset table and the w-tilde matrix."""

from .common import generate

generate(("w_tilde", "w_offsets", "w_tilde_from_offsets"), globals())

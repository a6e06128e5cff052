"""The JAX backend's sharded kernels: the offset table and the curvature
matrix laid over every device of the call's kind (a one-axis mesh), each
placing its inputs itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lenskern.backends.jax.device import _DEVICE_KIND
from lenskern.backends.jax.kernels import _block_size, _pad_blocks, _transpose_times, _w_offsets_half
from lenskern.registry import Cost, implements


def _sharded(function):
    """Mark a kernel that lays its inputs over a mesh of every device itself."""
    function.sharded = True
    return function


def _mesh() -> jax.sharding.Mesh:
    """A one-axis mesh ("d") of every device of the call's kind."""
    return jax.sharding.Mesh(np.array(jax.devices(_DEVICE_KIND.get())), ("d",))


def _split(total: int, parts: int) -> int:
    """Items per device when ``total`` items are dealt to ``parts`` devices (padded)."""
    return max(1, -(-total // parts))


@_sharded
@implements("w_offsets", "sharded", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K))
def w_offsets_sharded(uv, noise, pixel_scale, shape_native):
    """The offset table with the visibilities sharded over every device.

    See reference.w_offsets for the math. The table is a sum over
    visibilities, so each device sums the half table (as ``jax.half``) over
    its share of them and one ``psum`` adds the partial tables: what crosses
    between devices is a table per device, never the visibilities. Padding
    visibilities get weight 0 (infinite sigma).

    Cost: Ny (2Nx-1) K / D cosines per device (D devices) + one all-reduce
    of the 4 Ny Nx table; memory per device K / D + BLOCK_ELEMENTS floats.
    """
    mesh = _mesh()
    devices = mesh.devices.size
    share = _split(len(uv), devices)
    pad = share * devices - len(uv)
    uv = np.concatenate([uv, np.zeros((pad, 2))])
    noise = np.concatenate([noise, np.full(pad, np.inf)])
    shape = tuple(int(n) for n in shape_native)

    def partial_table(uv, noise):
        return lax.psum(_w_offsets_half(uv, noise, pixel_scale, shape_native=shape), "d")

    shards = NamedSharding(mesh, P("d"))
    # check_vma=False: the shared pieces' scans start from unsharded zeros.
    run = jax.jit(jax.shard_map(partial_table, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P(),
                                check_vma=False))  # fmt: skip
    return run(jax.device_put(uv, shards), jax.device_put(noise, shards))


def _source_columns(pix_indexes, pix_weights, n_sources: int, devices: int):
    """The mapping's slots dealt to devices by source pixel: device d owns
    the source columns [d c, (d + 1) c), c = ceil(S / D), and gets the
    (pixel, local column, weight) of every slot that maps into them, padded
    with weight-0 entries to the longest device's count."""
    columns = _split(n_sources, devices)
    pixel, slot = np.nonzero(pix_indexes >= 0)
    source = pix_indexes[pixel, slot]
    owner = source // columns
    longest = max(int(np.bincount(owner, minlength=devices).max()), 1)
    entries = np.zeros((3, devices, longest))
    for d in range(devices):
        mine = owner == d
        count = int(mine.sum())
        entries[0, d, :count] = pixel[mine]
        entries[1, d, :count] = source[mine] - d * columns
        entries[2, d, :count] = pix_weights[pixel[mine], slot[mine]]
    return columns, entries[0].astype(np.int64), entries[1].astype(np.int64), entries[2]


@_sharded
@implements("curvature_matrix", "sharded", Cost("flop", lambda M, B, S, **_: 3 * M * M * B + 2 * M * B * S))
def curvature_matrix_sharded(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """F = T^T W T with the source pixels sharded over every device, W never formed.

    See reference.curvature_matrix for the math. Device d owns a block of
    source columns S_d and computes F[:, S_d] = T^T (W T[:, S_d]): W T[:, S_d]
    reads from the offset table only the columns of W at pixels that map
    into S_d (about M B / D of them), in blocks, then T^T of it is a
    segment-sum over the slots. F is symmetric, so these columns are also
    F's rows S_d; the result is gathered once, at the end.

    Cost: M^2 B / D table reads and multiply-adds + 2 M B S / D per device
    (D devices); memory per device M S / D + BLOCK_ELEMENTS floats.
    """
    mesh = _mesh()
    devices = mesh.devices.size
    columns, pixel, column, weight = _source_columns(pix_indexes, pix_weights, n_sources, devices)
    ny, nx2 = (w_offsets.shape[0] + 1) // 2, w_offsets.shape[1]
    lin = native_index[:, 0] * nx2 + native_index[:, 1]
    centre = (ny - 1) * nx2 + (nx2 - 1) // 2
    table = w_offsets.ravel()
    m_count = len(native_index)
    block = _block_size(pixel.shape[1], m_count)

    def columns_of_f(table, lin, pix_indexes, pix_weights, pixel, column, weight):
        pixel, column, weight = pixel[0], column[0], weight[0]
        at = centre + lin  # W[i, j] = table[centre + lin_i - lin_j]

        def add_entries(wt_transposed, entries):
            j, c, w = entries
            w_columns = table[at[:, None] - lin[j][None, :]] * w[None, :]  # (M, block)
            return wt_transposed + jax.ops.segment_sum(w_columns.T, c, num_segments=columns), None

        padded = [_pad_blocks(a, block) for a in (pixel, column, weight)]  # weight-0 padding
        wt_transposed, _ = lax.scan(add_entries, jnp.zeros((columns, m_count)), padded)
        return _transpose_times(pix_indexes, pix_weights, wt_transposed.T, n_sources)  # (S, columns)

    replicated, shards = NamedSharding(mesh, P()), NamedSharding(mesh, P("d"))
    run = jax.jit(jax.shard_map(columns_of_f, mesh=mesh, in_specs=(P(),) * 4 + (P("d"),) * 3,
                                out_specs=P(None, "d"), check_vma=False))  # fmt: skip
    f = run(
        *(jax.device_put(a, replicated) for a in (table, lin, pix_indexes, pix_weights)),
        *(jax.device_put(a, shards) for a in (pixel, column, weight)),
    )
    return f[:, :n_sources]

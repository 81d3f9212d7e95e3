"""hwsim.systolic._sparse: weight formats, the sparse-on-dense functional path and the cost model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwsim import systolic
from hwsim.systolic._sparse import (
    CSC,
    CSR,
    NM,
    Bitmap,
    Compressed,
    Decompressor,
    Dense,
    DenseDecompressDesign,
    EnergyTable,
    SparsePEDesign,
    compare_designs,
    compress,
    decompress,
    is_nm_sparse,
    layer_traffic,
    prune_nm,
    sparse_on_dense_matmul,
)

FORMATS = [Dense(), Bitmap(), CSR(), CSC(), NM(2, 4), NM(1, 3)]
DENSITIES = [0.0, 0.1, 0.5, 1.0]


def _ids(x):
    return type(x).__name__ + (f"{x.n}:{x.m}" if isinstance(x, NM) else "")


def _sparse(rng, shape, density, dtype=np.int8):
    w = rng.integers(-128, 128, shape)
    w = np.where(w == 0, 1, w)  # `density` is exact: no accidental zeros
    w = np.where(rng.random(shape) < density, w, 0)
    return w.astype(dtype)


def _fit(w, fmt):
    """N:M formats take N:M-pruned weights; the others anything."""
    return np.array(prune_nm(w, fmt.n, fmt.m)) if isinstance(fmt, NM) else w


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
@pytest.mark.parametrize("density", DENSITIES)
def test_round_trip(fmt, density):
    rng = np.random.default_rng(int(100 * density))
    for shape in [(7, 5), (1, 9), (16, 1)]:
        w = _fit(_sparse(rng, shape, density), fmt)
        c = compress(w, fmt)
        assert isinstance(c, Compressed) and c.shape == shape
        np.testing.assert_array_equal(np.asarray(decompress(c)), w)
        assert int(c.nnz) == int(np.count_nonzero(w))
        # the closed form the cost model uses is the size of the encoded matrix
        assert int(c.storage_bits) == fmt.storage_bits(*shape, int(np.count_nonzero(w)), 8)


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_round_trip_jit_and_floats(fmt):
    rng = np.random.default_rng(3)
    w = _fit(_sparse(rng, (10, 6), 0.4, np.float32), fmt)
    c = jax.jit(lambda x: compress(x, fmt, capacity=40))(jnp.asarray(w))
    np.testing.assert_array_equal(np.asarray(jax.jit(decompress)(c)), w)
    assert c.value_bits == 32


def test_storage_bits_hand_counts():
    # K = 4, N = 3, 5 non-zeros of 8 bits
    w = jnp.array([[0, 7, 0], [1, 0, 0], [0, 5, -2], [3, 0, 0]], jnp.int8)
    sizes = {type(f).__name__ + str(getattr(f, "n", "")): int(compress(w, f).storage_bits)
             for f in (Dense(), Bitmap(), CSR(), CSC(), NM(2, 4), NM(1, 2))}
    assert sizes == {
        "Dense": 4 * 3 * 8,                          # 96
        "Bitmap": 12 + 5 * 8,                        # mask + values = 52
        "CSR": 5 * (8 + 2) + 5 * 4,                  # col index 2 bits; 5 row pointers of 4 bits (<= 12)
        "CSC": 5 * (8 + 2) + 4 * 4,                  # row index 2 bits; 4 column pointers of 4 bits
        "NM2": 1 * 3 * 2 * (8 + 2),                  # 1 group of 4, 2 slots per column, 2-bit index
        "NM1": 2 * 3 * 1 * (8 + 1),                  # 2 groups of 2, 1 slot, 1-bit index
    }


def test_capacity_and_padding():
    w = jnp.array([[0, 1], [2, 3]], jnp.int8)
    c = compress(w, CSR(), capacity=5)
    assert c.values.shape == (5,) and c.values.tolist() == [1, 2, 3, 0, 0]
    assert c.metadata[0].tolist()[:3] == [1, 0, 1] and c.metadata[1].tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="more non-zeros than `capacity`=2"):
        compress(w, CSC(), capacity=2)
    with pytest.raises(Exception, match="capacity"):
        jax.block_until_ready(jax.jit(lambda x: compress(x, Bitmap(), capacity=2).values)(w))
    with pytest.raises(ValueError, match="`capacity` must be a positive int"):
        compress(w, CSR(), capacity=0)


def test_nm_validity():
    w = jnp.array([[1, 0], [0, 0], [2, 3], [0, 4], [5, 6]], jnp.int8)  # K = 5: groups {0..3}, {4 + pad}
    assert bool(is_nm_sparse(w, 2, 4)) and not bool(is_nm_sparse(w, 1, 4))
    assert not bool(is_nm_sparse(w, 1, 2)) and bool(is_nm_sparse(jnp.zeros((3, 3), jnp.int8), 1, 8))
    with pytest.raises(ValueError, match="not 1:4 sparse"):
        compress(w, NM(1, 4))
    with pytest.raises(Exception, match="not 1:2 sparse"):
        jax.block_until_ready(jax.jit(lambda x: compress(x, NM(1, 2)).values)(w))
    pruned = prune_nm(jnp.array([[1, -9], [-5, 8], [3, 7], [2, -6]], jnp.int8), 2, 4)
    assert pruned.tolist() == [[0, -9], [-5, 8], [3, 0], [0, 0]]
    rng = np.random.default_rng(0)
    for n, m in [(1, 2), (2, 4), (3, 8), (4, 4)]:
        p = prune_nm(jnp.asarray(_sparse(rng, (13, 6), 0.9)), n, m)
        assert bool(is_nm_sparse(p, n, m))
    for bad in [(0, 4), (5, 4), (2.0, 4), (True, 2)]:
        with pytest.raises(ValueError, match="NM"):
            NM(*bad)


def test_bad_inputs():
    w = jnp.zeros((3, 2), jnp.int8)
    with pytest.raises(TypeError, match="`w` must be a 2-D array"):
        compress([[1, 2]], CSR())
    with pytest.raises(ValueError, match="`w` must be a non-empty 2-D"):
        compress(jnp.zeros((4,), jnp.int8), CSR())
    with pytest.raises(TypeError, match="`w` must have an integer or floating dtype"):
        compress(jnp.zeros((2, 2), bool), CSR())
    with pytest.raises(TypeError, match="write CSC()"):
        compress(w, CSC)
    with pytest.raises(TypeError, match="`fmt` must be an AbstractFormat"):
        compress(w, "coo")
    assert isinstance(compress(w, "bitmap").format, Bitmap)
    with pytest.raises(TypeError, match="`c` must be a Compressed"):
        decompress(w)
    with pytest.raises(TypeError, match="`weights` must be a Compressed"):
        sparse_on_dense_matmul(jnp.zeros((2, 3), jnp.int8), w, systolic.SystolicArray(2, 2))


# --------------------------------------------------------------------------------------------------
# Functional path: compress -> decompress -> dense array
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=_ids)
def test_sparse_on_dense_bit_exact(fmt):
    rng = np.random.default_rng(7)
    for density, df, (m, k, n), (r, c) in [(0.3, "ws", (9, 13, 6), (4, 3)), (0.0, "os", (5, 7, 4), (3, 3)),
                                           (1.0, "is", (6, 10, 7), (4, 5))]:
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        a[0, :] = -128
        w = _fit(_sparse(rng, (k, n), density), fmt)
        w[:, 0] = np.where(w[:, 0] != 0, 127, 0) if isinstance(fmt, NM) else 127
        res = sparse_on_dense_matmul(a, compress(w, fmt), systolic.SystolicArray(r, c), dataflow=df)
        ref = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.int32)
        np.testing.assert_array_equal(np.asarray(res.output), ref)
        sim = systolic.simulate(systolic.gemm(m, n, k), systolic.SystolicArray(r, c), dataflow=df)
        assert int(res.cycles) == int(sim.cycles)  # the dense array does not skip zeros
        nz = (a != 0).astype(np.int64) @ (w != 0).astype(np.int64)
        assert int(res.effectual_macs) == int(nz.sum())


# --------------------------------------------------------------------------------------------------
# Cost model
# --------------------------------------------------------------------------------------------------


def test_layer_traffic_hand_count():
    # weight stationary, M=4, N=8, K=16 on 4x4: S_r=16, S_c=8, T=4; 4 row folds, 2 column folds
    t = layer_traffic(systolic.gemm(4, 8, 16), 0.0, systolic.SystolicArray(4, 4), fmt=Dense())
    assert float(t.weight_bits) == 16 * 8 * 8
    assert float(t.dram_read_bits) == 1024 + 4 * 16 * 8 and float(t.dram_write_bits) == 4 * 8 * 8
    # ifmap 2*4*16 words, filter 16*8 words, (4-1)*4*8 partial sums read back at 32 bits
    assert float(t.sram_read_bits) == 128 * 8 + 128 * 8 + 96 * 32
    assert float(t.sram_write_bits) == 4 * 4 * 8 * 32
    # at 75 % sparsity in CSC: 32 non-zeros x (8 + 4) + 9 pointers x 8 bits; filter reads shrink alike
    c = layer_traffic(systolic.gemm(4, 8, 16), 0.75, systolic.SystolicArray(4, 4), fmt=CSC())
    assert float(c.weight_bits) == 32 * 12 + 9 * 8
    assert float(c.sram_read_bits) == 128 * 8 + (32 * 12 + 9 * 8) + 96 * 32
    topo = systolic.load_topology("bert_base_encoder")
    sweep = layer_traffic(topo, jnp.array([0.0, 0.5, 0.9]), systolic.SystolicArray(32, 32))
    assert sweep.weight_bits.shape == (len(topo), 3)
    assert bool(jnp.all(jnp.diff(sweep.dram_read_bits, axis=1) < 0))


def test_format_break_even_against_dense():
    """Metadata makes CSC bigger than dense at low sparsity and smaller at high sparsity."""
    k, n = 768, 768
    dense = Dense().storage_bits(k, n, 0, 8)
    nnz = lambda density: density * k * n  # noqa: E731
    assert CSC().storage_bits(k, n, nnz(0.9), 8) > dense          # 8 + 10 bits per non-zero
    assert CSC().storage_bits(k, n, nnz(0.3), 8) < dense
    assert Bitmap().storage_bits(k, n, nnz(0.5), 8) < dense       # 1 bit per element + values
    assert Bitmap().storage_bits(k, n, nnz(0.95), 8) > dense
    assert NM(2, 4).storage_bits(k, n, 0, 8) == k * n // 2 * 10


def test_decompressor_stalls():
    assert float(Decompressor().stall_cycles(16)) == 4.0            # keeps pace: only its latency
    assert float(Decompressor(rows_per_cycle=0.5).stall_cycles(8)) == 16 + 4 - 8
    assert float(Decompressor(rows_per_cycle=4.0, latency=0.0).stall_cycles(8)) == 0.0
    assert float(Decompressor(rows_per_cycle=0.5).elements_per_cycle(32)) == 16.0


def test_compare_designs_crossover():
    layer = systolic.gemm(3136, 128, 1152)   # a ResNet-18 3x3 conv, compute bound
    s = jnp.linspace(0.0, 0.98, 50)
    r = compare_designs(layer, s, 2.0e6)
    dense, sparse = r["dense+decompressor"], r["sparse-PE"]
    assert dense.throughput_per_area.shape == (50,)
    # equal area: k = 4 times fewer sparse PEs, minus the decompressor's 2 %
    assert float(dense.pes) > 3.5 * float(sparse.pes)
    adv = np.asarray(dense.throughput_per_area / sparse.throughput_per_area)
    assert adv[0] > 3.0 and adv[-1] < 1.0
    flips = np.flatnonzero(np.diff(np.sign(adv - 1.0)))
    assert len(flips) == 1 and 0.6 < float(s[flips[0]]) < 0.9   # one crossover, near 1 - 1/(k(1+o))
    assert bool(jnp.all(jnp.diff(sparse.throughput_per_area) >= 0))
    # storing the weights compressed saves DRAM energy once sparsity beats the metadata
    plain = r["dense"]
    assert float(dense.energy_dram[0]) > float(plain.energy_dram[0])
    assert float(dense.energy_dram[-1]) < float(plain.energy_dram[-1])
    assert float(dense.traffic.weight_bits[-1]) < 0.05 * float(plain.traffic.weight_bits[-1])
    # the sparse PE does fewer MACs but pays for the index matching
    e = EnergyTable()
    np.testing.assert_allclose(np.asarray(sparse.energy_mac[0]), 3136 * 128 * 1152 * (e.mac + e.index_match),
                               rtol=1e-6)


def test_compare_designs_sweeps_and_errors():
    layer = systolic.gemm(128, 768, 768)
    factors = jnp.array([2.0, 4.0, 8.0])
    tpa = jax.vmap(lambda f: compare_designs(layer, 0.5, 1e6, designs={"s": SparsePEDesign(area_factor=f)})
                   ["s"].throughput_per_area)(factors)
    assert bool(jnp.all(jnp.diff(tpa) < 0))   # bigger sparse PEs: lower throughput per area
    topo = systolic.load_topology("resnet18")
    r = compare_designs(topo, jnp.array([0.0, 0.9]), 1e6,
                        designs={"d": DenseDecompressDesign(fmt=Bitmap()), "s": SparsePEDesign()})
    assert r["d"].energy.shape == (len(topo), 2)
    with pytest.raises(ValueError, match="`sparsity` must be in"):
        compare_designs(layer, 1.0, 1e6)
    with pytest.raises(ValueError, match="`area_um2` must be positive"):
        compare_designs(layer, 0.5, 0.0)
    with pytest.raises(TypeError, match="`designs` values must be AbstractDesign"):
        compare_designs(layer, 0.5, 1e6, designs={"x": CSC()})
    with pytest.raises(TypeError, match="`layer` must be"):
        compare_designs((128, 768, 768), 0.5, 1e6)

"""PyTorch's CPU random generator on NumPy: `manual_seed`, `Generator`, and the draws behind torch.rand & co.

The book starts most listings with `torch.manual_seed(123)` and then draws without naming a
generator: layer initialisation, dropout masks, shuffling, sampling, and prints what it got. So
that a reader sees the book's numbers, minigpt draws the very streams of PyTorch's CPU generator:

- the bit source is a 32-bit Mersenne Twister (mt19937) seeded as `std::mt19937(seed)` (the low
  32 bits of the seed, Knuth's initialisation); NumPy ships the same bit generator
  (`np.random.MT19937`), whose state we set from that seeding. `random32` is one 32-bit output,
  `random64` two of them, the first one the high word (PyTorch's `random()` / `random64()`).
- the transforms are PyTorch's (aten/src/ATen/core/DistributionsHelper.h, TransformationHelper.h,
  native/cpu/DistributionTemplates.h, MultinomialKernel.cpp, TensorFactories.cpp randperm), each
  re-written here vectorised over the whole draw:

  ========================  ============================================================
  draw                      how PyTorch (CPU) computes one element
  ========================  ============================================================
  rand / uniform_ float32   fma((random32 & (2^24-1)) * 2^-24, to - from, from), in float32
  rand / uniform_ float64   (random64 & (2^53-1)) * 2^-53 * (to - from) + from, in float64
  randn / normal_, n >= 16  uniforms for all n, then Box-Muller on blocks of 16: element j and
                            j + 8 of a block from u1 = 1 - u[j], u2 = u[j + 8]; a size that is
                            not a multiple of 16 draws 16 new uniforms for its last 16 elements
  randn / normal_, n < 16   Box-Muller in float64 from two random64 uniforms per PAIR; the
                            second value (r sin) is cached in the generator for the next call
  randint / random_(a, b)   random32 % (b - a) + a, or random64 when b - a >= 2^28
  random_()                 random64 % 2^63 (int64), random32 % 2^31 (int32), ...
  randperm(n)               Fisher-Yates: for i < n - 1 swap i and i + random32 % (n - i)
  bernoulli_(p), dropout    float64 uniform (random64) < p
  bernoulli(p tensor)       float32 p: float32 uniform (random32) < p; float64 p: as above
  exponential_(lambd)       -1 / lambd * log1p(-u), u a float64 uniform (random64)
  multinomial, 1 sample or  argmax / topk of p / q with q ~ Exp(1) (exponential_ of p's shape)
  without replacement
  multinomial, replacement  a float64 uniform per sample, binary search in the row's
                            cumulative sums (float32 if p is), normalised by the row's sum
  ========================  ============================================================

Integers come out bit for bit; floats to the last bit where PyTorch computes with IEEE
operations, and within a unit or two of the last place where it calls a vectorised log/sin/cos
(randn's blocks of 16, which PyTorch runs with SIMD approximations on x86).

A draw that is given no generator uses the ONE default generator of the process,
`default_generator`, seeded from the operating system's entropy at import, as PyTorch 2.13 seeds
its default CPU generator (`torch.initial_seed()` differs from process to process), until
`manual_seed`; a new `Generator()` starts from PyTorch's default seed, 67280421310721.
Everything that takes `generator=` / `rng=` also takes an `np.random.Generator` (NumPy's own
streams, as minigpt drew before) or an int seed (a new `Generator` seeded with it).

    >>> import autograd as torch
    >>> _ = torch.manual_seed(123)
    >>> torch.rand(3).numpy()   # what PyTorch prints: tensor([0.2961, 0.5166, 0.2517])
    array([0.29611194, 0.5165623 , 0.25166154], dtype=float32)

References: torch.manual_seed, torch.Generator, torch.get_rng_state (PyTorch docs,
"Reproducibility"); Matsumoto & Nishimura 1998, "Mersenne Twister", ACM TOMACS 8(1); Box & Muller
1958; Gumbel-max sampling for multinomial (PyTorch issue 11931).
"""

from __future__ import annotations

import math
import secrets
import struct

import numpy as np

DEFAULT_SEED = 67280421310721  # PyTorch's default_rng_seed_val: the seed before any manual_seed
_MT_N = 624  # words of mt19937 state
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState), the layout of torch.get_rng_state()
_U64 = np.uint64


def _mt19937_key(seed32: int) -> np.ndarray:
    """The 624 state words of std::mt19937(seed32) (Matsumoto & Nishimura's init_genrand)."""
    key = np.empty(_MT_N, dtype=np.uint32)
    word = seed32
    key[0] = word
    for index in range(1, _MT_N):  # 623 steps, once per seeding: a loop is fine here
        word = (1812433253 * (word ^ (word >> 30)) + index) & 0xFFFFFFFF
        key[index] = word
    return key


def _check_seed(seed, function: str) -> int:
    """`seed` as an int in [0, 2**64), as PyTorch reads it: int(seed), negatives from -2**63 wrap.

    Raises:
        TypeError: seed is not convertible to int (None, a list, ...).
        ValueError: a string that is not a number, or a value outside [-2**63, 2**64).
    """
    try:
        value = int(seed)
    except TypeError:
        raise TypeError(f"{function}: seed must be an int in [0, 2**64), got {type(seed).__name__}") from None
    except ValueError:
        raise ValueError(f"{function}: seed must be an int in [0, 2**64), got {seed!r}") from None
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"{function}: seed must be an int in [0, 2**64) (PyTorch also wraps [-2**63, 0)), got {value}")
    return value % 2**64


class Generator:
    """PyTorch's CPU generator (torch.Generator): mt19937 with the cached normal of Box-Muller.

    Args:
        device: "cpu" (or None); minigpt has no other device.

    Attributes:
        device: "cpu".

    Methods follow torch.Generator: `manual_seed(seed)` (returns self), `initial_seed()`,
    `seed()`, `get_state()` / `set_state(state)` (5056 uint8 bytes laid out as PyTorch's, so
    states move between the two; `set_state` takes an array or a Tensor). The drawing primitives `random32(n)` and
    `random64(n)` are PyTorch's `random()` / `random64()`, n at a time.

    Raises:
        ValueError: a device other than the CPU.

    References: torch.Generator; aten/src/ATen/CPUGeneratorImpl.cpp, core/MT19937RNGEngine.h.
    """

    def __init__(self, device="cpu"):
        if device not in (None, "cpu") and str(device) != "cpu":
            raise ValueError(f"Generator: minigpt runs on the CPU only, got device {device!r}")
        self.device = "cpu"
        self._bits = np.random.MT19937(0)
        self._numbers = np.random.Generator(self._bits)  # its integers() reads the MT words in order
        self.manual_seed(DEFAULT_SEED)

    def manual_seed(self, seed) -> "Generator":
        """Re-seed in place: the state of std::mt19937(seed & 0xffffffff); drops the cached normal.

        Raises: TypeError / ValueError for a seed PyTorch refuses (see `_check_seed`).
        """
        self._seed = _check_seed(seed, "manual_seed")
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": _mt19937_key(self._seed & 0xFFFFFFFF), "pos": _MT_N}}
        self._fresh = True  # PyTorch's `next` word index is 0 right after seeding
        self.next_double_normal = None  # the r*sin(theta) of the last scalar Box-Muller pair
        self.next_float_normal = None
        return self

    def initial_seed(self) -> int:
        """The seed of the last `manual_seed` / `seed` (torch.Generator.initial_seed)."""
        return self._seed

    def seed(self) -> int:
        """Seed from the operating system's entropy (53 bits, as PyTorch) and return the seed."""
        value = secrets.randbits(53)
        self.manual_seed(value)
        return value

    @property
    def bit_generator(self) -> np.random.MT19937:
        """The NumPy MT19937 underneath; its `.state` reads and sets the twister as NumPy's does
        (without the cached normal: use `get_state` / `set_state` for PyTorch's whole state)."""
        return self._bits

    # -- PyTorch's random() and random64(), n at a time ----------------------------------------

    def random32(self, n: int) -> np.ndarray:
        """n 32-bit outputs of the twister, as uint32 (PyTorch's `random()` called n times)."""
        self._fresh = self._fresh and n == 0
        return self._numbers.integers(0, 2**32, int(n), dtype=np.uint32)

    def random64(self, n: int) -> np.ndarray:
        """n 64-bit values, each two outputs with the first as the high word (`random64()`)."""
        self._fresh = self._fresh and n == 0
        # NumPy's MT19937 makes a 64-bit value the same way: (first << 32) | second.
        return self._numbers.integers(0, 2**64, int(n), dtype=np.uint64)

    # -- state, in torch.get_rng_state()'s byte layout ----------------------------------------

    def get_state(self) -> np.ndarray:
        """The state as a uint8 array (5056,), PyTorch's CPUGeneratorImplState layout (PyTorch
        returns these bytes as a ByteTensor; `torch.tensor(state)` makes one).

        Bytes: initial seed (u64), left (i32), seeded (i32), next (u64), 624 state words (u64
        each), normal_x/normal_y/normal_rho (f64; normal_y holds the cached float64 normal),
        normal_is_valid (i32), padding, the cached float32 normal (f32) and its flag (bool).
        """
        state = self._bits.state["state"]
        pos = int(state["pos"])
        left, next_index = 625 - pos, (0 if self._fresh else pos)
        out = bytearray(_STATE_BYTES)
        struct.pack_into("<QiiQ", out, 0, self._seed, left, 1, next_index)
        out[24:24 + 8 * _MT_N] = np.asarray(state["key"], dtype=np.uint64).tobytes()
        cached = self.next_double_normal
        struct.pack_into("<dddi", out, 24 + 8 * _MT_N, 0.0, 0.0 if cached is None else cached, 0.0, cached is not None)
        float_cached = self.next_float_normal
        struct.pack_into("<f?", out, 5048, 0.0 if float_cached is None else float_cached, float_cached is not None)
        return np.frombuffer(bytes(out), dtype=np.uint8).copy()

    def set_state(self, new_state) -> "Generator":
        """Restore a state from `get_state()` (or torch.get_rng_state()). Returns self.

        Raises:
            TypeError: not a uint8 tensor/array. ValueError: not 5056 bytes, or a corrupt `left`.
        """
        data = new_state if isinstance(new_state, np.ndarray) else getattr(new_state, "data", new_state)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise TypeError(f"set_state: expected a torch.ByteTensor (uint8) of {_STATE_BYTES} bytes, got {type(new_state).__name__}")
        if data.size != _STATE_BYTES:
            raise ValueError(f"set_state: expected {_STATE_BYTES} bytes (PyTorch's CPU generator state), got {data.size}")
        raw = data.tobytes()
        seed, left, _seeded, next_index = struct.unpack_from("<QiiQ", raw, 0)
        if not 1 <= left <= _MT_N:
            raise ValueError(f"set_state: corrupt state, `left` must be in [1, 624], got {left}")
        key = np.frombuffer(raw, dtype=np.uint64, count=_MT_N, offset=24).astype(np.uint32)
        _x, normal_y, _rho, normal_valid = struct.unpack_from("<dddi", raw, 24 + 8 * _MT_N)
        float_normal, float_valid = struct.unpack_from("<f?", raw, 5048)
        self._seed = seed
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 625 - left}}
        self._fresh = next_index == 0 and left == 1
        self.next_double_normal = normal_y if normal_valid else None
        self.next_float_normal = float_normal if float_valid else None
        return self

    def __repr__(self) -> str:
        return f"<autograd.Generator (PyTorch's CPU mt19937) initial_seed={self._seed}>"


default_generator = Generator()  # torch.default_generator: what every draw without a generator uses
default_generator.manual_seed(secrets.randbits(64))  # a fresh seed per process, as PyTorch's default CPU generator


def manual_seed(seed) -> Generator:
    """Seed the default generator (torch.manual_seed) and return it.

    Args:
        seed: an int in [0, 2**64) (PyTorch also accepts [-2**63, 0), wrapped modulo 2**64, and
            anything `int()` converts, such as a float, which it truncates).

    Returns:
        `default_generator` (the same object: it is re-seeded in place).

    Raises:
        TypeError: seed is None or another non-number. ValueError: out of range, or a non-numeric
        string (as PyTorch).

    References: torch.manual_seed.
    """
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    """The default generator's seed (torch.initial_seed)."""
    return default_generator.initial_seed()


def seed() -> int:
    """Seed the default generator from the OS's entropy and return the seed (torch.seed)."""
    return default_generator.seed()


def get_rng_state() -> np.ndarray:
    """The default generator's state, uint8 (5056,), PyTorch's bytes (torch.get_rng_state)."""
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    """Restore the default generator's state from `get_rng_state()` (torch.set_rng_state)."""
    default_generator.set_state(new_state)


def resolve_generator(rng=None):
    """The generator a draw uses: `rng` itself, a new `Generator` seeded by it, or the default one.

    Args:
        rng: None (`default_generator`), an int seed (a new `Generator().manual_seed(rng)`),
            a `Generator`, or an `np.random.Generator` (used as is: NumPy's streams).

    Returns:
        A `Generator` or an `np.random.Generator`.

    Raises:
        TypeError: another type (a float, a bool, a legacy `np.random.RandomState`...).
        ValueError: an int seed outside [0, 2**64).
    """
    if rng is None:
        return default_generator
    if isinstance(rng, (Generator, np.random.Generator)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if not 0 <= rng < 2**64:
            raise ValueError(f"rng: an int seed must be in [0, 2**64), got {rng}")
        return Generator().manual_seed(int(rng))
    raise TypeError(f"rng / generator must be None, an int seed, an autograd.Generator or a np.random.Generator, got {type(rng).__name__}")


# ----------------------------------------------------------------------------------------------
# The draws, as PyTorch's CPU kernels compute them. `shape` is a tuple of ints; each returns a
# new C-contiguous array. A np.random.Generator gets NumPy's own method instead.
# ----------------------------------------------------------------------------------------------


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _uniform01(gen: Generator, n: int, dtype) -> np.ndarray:
    """n uniforms in [0, 1) of `dtype`: 24 bits of random32 (float32) or 53 of random64 (float64)."""
    if np.dtype(dtype) == np.float64:
        return (gen.random64(n) & _U64(2**53 - 1)).astype(np.float64) * 2.0**-53
    return (gen.random32(n) & np.uint32(2**24 - 1)).astype(np.float32) * np.float32(2.0**-24)


def _fma64(a: np.ndarray, b: float, c: float) -> np.ndarray:
    """a * b + c rounded once, as a fused multiply-add, for float64 `a` (PyTorch's compiled
    x * (to - from) + from). The product is split exactly in two (Dekker 1971: Veltkamp's
    split, two-product), added to c with Knuth's two-sum, and the error terms folded in last."""
    product = a * b
    split = 134217729.0  # 2^27 + 1
    a_big = split * a
    a_high = a_big - (a_big - a)
    a_low = a - a_high
    b_big = split * b
    b_high = b_big - (b_big - b)
    b_low = b - b_high
    product_error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low
    total = product + c
    back = total - product
    sum_error = (product - (total - back)) + (c - back)
    return total + (sum_error + product_error)


def _libm(function, values: np.ndarray) -> np.ndarray:
    """`function` (math.log1p, math.cos, ...) of each float64 value, by the C library.

    NOTE: NumPy's float64 log / log1p / sin / cos may run SIMD versions (SVML on AVX-512) that
    are a unit in the last place off at times; PyTorch's scalar kernels call the C library's. For
    float64 draws, which PyTorch returns unrounded, this per-element loop keeps the last bit.
    """
    return np.fromiter(map(function, values.ravel().tolist()), dtype=np.float64, count=values.size).reshape(values.shape)


def uniform(gen, shape, low: float = 0.0, high: float = 1.0, dtype=np.float32) -> np.ndarray:
    """U(low, high) of `shape` and float `dtype` (torch.rand, Tensor.uniform_): x * (high - low) + low.

    A value that rounds to `high` becomes `low` (PyTorch's uniform_ kernel does so).
    """
    dtype = np.dtype(dtype)
    if isinstance(gen, np.random.Generator):
        return gen.uniform(low, high, shape).astype(dtype) if (low, high) != (0.0, 1.0) else gen.random(shape, dtype=dtype)
    lo, hi = dtype.type(low), dtype.type(high)
    values = _uniform01(gen, _size(shape), dtype)
    if dtype == np.float32:
        # x * (to - from) + from is compiled to one fused multiply-add: the float32 product is
        # exact in float64, so one float64 sum rounded to float32 gives fma's result.
        values = (values.astype(np.float64) * np.float64(hi - lo) + np.float64(lo)).astype(np.float32)
    else:
        values = _fma64(values, float(hi - lo), float(lo))
    values[values == hi] = lo
    return values.reshape(shape)


def _box_muller_16(u: np.ndarray, mean: float, std: float) -> np.ndarray:
    """PyTorch's NormalFill16 on rows of 16 uniforms: (M, 16) -> (M, 16) normals, u's dtype."""
    dtype = u.dtype
    u1 = 1 - u[:, :8]  # [0, 1) -> (0, 1], for the log
    u2 = u[:, 8:]
    if dtype == np.float32:
        # float32 as std::log / std::cos on floats: the float64 value rounded once to float32.
        log_u1 = np.log(u1.astype(np.float64)).astype(np.float32)
        radius = np.sqrt(np.float32(-2) * log_u1)
        theta = (2.0 * math.pi * u2.astype(np.float64)).astype(np.float32)  # 2.0f * pi<double>: a double product
        cos = np.cos(theta.astype(np.float64)).astype(np.float32)
        sin = np.sin(theta.astype(np.float64)).astype(np.float32)
        # fma(radius * cos, std, mean): one rounding of the exact product-sum (exact in float64).
        first = ((radius * cos).astype(np.float64) * np.float32(std) + np.float32(mean)).astype(np.float32)
        second = ((radius * sin).astype(np.float64) * np.float32(std) + np.float32(mean)).astype(np.float32)
    else:
        radius = np.sqrt(-2.0 * _libm(math.log, u1))
        theta = 2.0 * math.pi * u2
        first = _fma64(radius * _libm(math.cos, theta), std, mean)
        second = _fma64(radius * _libm(math.sin, theta), std, mean)
    return np.concatenate([first, second], axis=1)


def _normal_scalar(gen: Generator, mean: float, std: float) -> float:
    """One float64 normal_distribution<double> draw, with the generator's cached second value."""
    if gen.next_double_normal is not None:
        value, gen.next_double_normal = gen.next_double_normal, None
        return value * std + mean
    u1, u2 = _uniform01(gen, 2, np.float64)
    radius = math.sqrt(-2.0 * math.log1p(-u2))
    theta = 2.0 * math.pi * u1
    gen.next_double_normal = radius * math.sin(theta)
    return radius * math.cos(theta) * std + mean


def normal(gen, shape, mean: float = 0.0, std: float = 1.0, dtype=np.float32) -> np.ndarray:
    """N(mean, std^2) of `shape` and float `dtype` (torch.randn, Tensor.normal_, nn.init.normal_).

    16 or more elements: PyTorch's `normal_fill` (uniforms for all, Box-Muller per block of 16,
    the last 16 redrawn when the size is not a multiple of 16). Fewer: the scalar float64 path
    with the generator's cached normal (see the module docstring).
    """
    dtype = np.dtype(dtype)
    if isinstance(gen, np.random.Generator):
        values = gen.standard_normal(shape, dtype=dtype)
        return values * dtype.type(std) + dtype.type(mean) if (mean, std) != (0.0, 1.0) else values
    size = _size(shape)
    if size < 16:
        return np.array([_normal_scalar(gen, mean, std) for _ in range(size)], dtype=dtype).reshape(shape)
    values = _uniform01(gen, size, dtype)
    whole = size // 16 * 16
    values[:whole] = _box_muller_16(values[:whole].reshape(-1, 16), mean, std).ravel()
    if size % 16:
        values[size - 16:] = _box_muller_16(_uniform01(gen, 16, dtype).reshape(1, 16), mean, std).ravel()
    return values.reshape(shape)


def integers(gen, low: int, high: int, shape, dtype=np.int64) -> np.ndarray:
    """Integers uniform in [low, high) (torch.randint, Tensor.random_(low, high)): r % (high - low) + low.

    r is random32, or random64 when high - low >= 2**28 (PyTorch's choice, to keep the modulo's
    bias under about 5 %).

    Raises: ValueError if high <= low.
    """
    if high <= low:
        raise ValueError(f"random_ / randint: expects low < high, got low={low}, high={high}")
    if isinstance(gen, np.random.Generator):
        return gen.integers(low, high, shape).astype(dtype)
    span = high - low
    draws = gen.random64(_size(shape)) if span >= 2**28 else gen.random32(_size(shape)).astype(np.uint64)
    values = (draws % _U64(span)).astype(np.int64) + np.int64(low)
    return values.astype(dtype).reshape(shape)


def random_bits(gen, shape, dtype) -> np.ndarray:
    """Tensor.random_() with no bounds: [0, 2^63) for int64, [0, 2^31) for int32, ..., [0, 2^24]
    for float32 and [0, 2^53] for float64 (PyTorch's uniform_int)."""
    dtype = np.dtype(dtype)
    if isinstance(gen, np.random.Generator):
        gen = Generator().manual_seed(int(gen.integers(2**63)))
    n = _size(shape)
    if dtype == np.bool_:
        return (gen.random32(n) & np.uint32(1)).astype(bool).reshape(shape)
    if dtype in (np.int64, np.float64):
        modulus = 2**63 if dtype == np.int64 else 2**53 + 1
        return (gen.random64(n) % _U64(modulus)).astype(dtype).reshape(shape)
    modulus = 2**24 + 1 if dtype == np.float32 else int(np.iinfo(dtype).max) + 1
    return (gen.random32(n).astype(np.uint64) % _U64(modulus)).astype(dtype).reshape(shape)


def permutation(gen, n: int) -> np.ndarray:
    """A random permutation of 0..n-1, int64 (torch.randperm), by PyTorch's CPU algorithm.

    n < 2**32 / 20: Fisher-Yates from the front, position i swapped with i + random32 % (n - i)
    (the draws are vectorised, the n - 1 swaps are a loop, as they depend on one another). Larger
    n: the "inside-out" variant with random64 % (i + 1), as PyTorch.
    """
    if isinstance(gen, np.random.Generator):
        return gen.permutation(n).astype(np.int64)
    if n < 2**32 // 20:
        offsets = (gen.random32(max(n - 1, 0)).astype(np.int64) % np.arange(n, 1, -1, dtype=np.int64)).tolist()
        order = list(range(n))
        for i, offset in enumerate(offsets):
            j = i + offset
            order[i], order[j] = order[j], order[i]
        return np.array(order, dtype=np.int64)
    picks = (gen.random64(n) % np.arange(1, n + 1, dtype=np.uint64)).tolist()
    order = [0] * n
    for i, z in enumerate(picks):
        order[i] = order[z]
        order[z] = i
    return np.array(order, dtype=np.int64)


def bernoulli_keep(gen, shape, p: float) -> np.ndarray:
    """bool array of `shape`, True with probability p: float64 uniform (random64) < p (Tensor.bernoulli_(p)).

    Vectorised on 32-bit halves: u = v * 2^-53 with v = (hi & (2^21 - 1)) * 2^32 + lo, and
    u < p  <=>  v < ceil(p * 2^53) = T. Compare the high halves, then the low halves where the
    high halves tie (1 in 2^21 elements). This is also nn.Dropout's mask: PyTorch's CPU dropout
    is `input * empty_like(input).bernoulli_(1 - p).div_(1 - p)`.
    """
    if isinstance(gen, np.random.Generator):
        return gen.random(shape) < p
    threshold = math.ceil(p * 2.0**53)  # p * 2^53 is exact in float64
    words = gen.random64(_size(shape)).view(np.uint32)  # little-endian pairs (lo, hi)
    low_words, high_words = words[0::2], words[1::2] & np.uint32(2**21 - 1)
    keep = high_words < np.uint32(threshold >> 32)
    ties = np.flatnonzero(high_words == np.uint32(threshold >> 32))
    if ties.size:
        keep[ties] = low_words[ties] < np.uint32(threshold & 0xFFFFFFFF)
    return keep.reshape(shape)


def bernoulli_tensor(gen, p: np.ndarray) -> np.ndarray:
    """bool array of p's shape, element i True with probability p[i] (torch.bernoulli(p)).

    float64 p: a float64 uniform (random64) per element; float32 p: a float32 uniform (random32),
    compared in float32 (PyTorch's bernoulli_distribution<float>).
    """
    if isinstance(gen, np.random.Generator):
        return gen.random(p.shape) < p
    if p.dtype == np.float64:
        return _uniform01(gen, p.size, np.float64).reshape(p.shape) < p
    return _uniform01(gen, p.size, np.float32).reshape(p.shape) < p.astype(np.float32)


def exponential(gen, shape, lambd: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Exp(lambd) of `shape` (Tensor.exponential_): -1 / lambd * log1p(-u), u a float64 uniform."""
    if isinstance(gen, np.random.Generator):
        return gen.exponential(1.0 / lambd, shape).astype(dtype)
    u = _uniform01(gen, _size(shape), np.float64)
    # float32 results: NumPy's vectorised log1p (a last-bit difference in float64 almost never
    # survives the rounding to float32); float64 results: the C library's, as PyTorch.
    log = np.log1p(-u) if np.dtype(dtype) == np.float32 else _libm(math.log1p, -u)
    return ((-1.0 / lambd) * log).astype(dtype).reshape(shape)


def multinomial(gen, weights: np.ndarray, num_samples: int, replacement: bool) -> np.ndarray:
    """int64 (R, num_samples) draws from the rows of `weights` (R, V) (torch.multinomial's CPU kernels).

    Without replacement, or one sample: the Gumbel-max trick as PyTorch writes it, the top
    `num_samples` of p / q with q ~ Exp(1) drawn for the whole (R, V) array. With replacement:
    per row (in order), per sample, a float64 uniform looked up in the row's cumulative sums
    (summed one by one in p's dtype, divided by the sum, the last set to 1). The callers check
    the weights (non-negative, finite, a positive sum per row).
    """
    if isinstance(gen, np.random.Generator):
        totals = weights.sum(axis=1, dtype=np.float64)
        return np.stack([gen.choice(row.size, size=num_samples, replace=replacement, p=row / total)
                         for row, total in zip(weights.astype(np.float64), totals)]).astype(np.int64)
    if not replacement or num_samples == 1:
        ratio = weights / exponential(gen, weights.shape, 1.0, weights.dtype)  # (R, V), p's dtype
        if num_samples == 1:
            return np.argmax(ratio, axis=1)[:, None].astype(np.int64)
        # topk: largest first; a stable sort of -ratio keeps the lower index first among ties
        return np.argsort(-ratio, axis=1, kind="stable")[:, :num_samples].astype(np.int64)
    cumulative = np.cumsum(weights, axis=1, dtype=weights.dtype)  # (R, V), added one by one
    cumulative /= cumulative[:, -1:]
    cumulative[:, -1] = 1
    out = np.empty((weights.shape[0], num_samples), dtype=np.int64)
    for row in range(weights.shape[0]):
        draws = _uniform01(gen, num_samples, np.float64)
        # first slot whose cumulative value is >= the draw (PyTorch's binary search)
        out[row] = np.searchsorted(cumulative[row].astype(np.float64), draws, side="left")
    return out


__all__ = [
    "Generator", "default_generator", "manual_seed", "initial_seed", "seed", "get_rng_state",
    "set_rng_state", "resolve_generator", "DEFAULT_SEED", "uniform", "normal", "integers",
    "random_bits", "permutation", "bernoulli_keep", "bernoulli_tensor", "exponential", "multinomial",
]

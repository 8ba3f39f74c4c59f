"""The process-wide default random generator, as `torch.manual_seed` and `torch.default_generator`.

The book starts most listings with `torch.manual_seed(123)` and then draws without naming a
generator: layer initialisation, dropout masks, shuffling, sampling. minigpt keeps the same
habit possible while every draw still comes from an explicit `np.random.Generator` (DESIGN.md,
Numerics): a draw that is given no generator asks `resolve_generator(None)`, which returns the ONE
default generator of the process; `manual_seed(seed)` replaces that generator by a freshly
seeded one. So one call at the top of a script makes everything after it reproducible, and code
that passes its own `rng=` is untouched by it.

    >>> import autograd as torch
    >>> _ = torch.manual_seed(123)
    >>> a = torch.rand(2)
    >>> _ = torch.manual_seed(123)
    >>> bool((torch.rand(2) == a).all())
    True

The numbers are NumPy's (PCG64), not PyTorch's (Mersenne Twister): the same seed gives a
reproducible run, not the book's printed random values.

References: torch.manual_seed, torch.default_generator (PyTorch docs, "Reproducibility");
NumPy's `np.random.Generator` / `np.random.default_rng`.
"""

from __future__ import annotations

import numpy as np

# Unseeded until manual_seed is called: fresh entropy, as PyTorch before torch.manual_seed.
_default_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Re-seed the process-wide default generator and return it (torch.manual_seed).

    Args:
        seed: a non-negative int (Python or NumPy integer; bool is refused).

    Returns:
        The new default generator, `np.random.default_rng(seed)`. PyTorch returns its generator
        object too; callers usually ignore it.

    Raises:
        TypeError: seed is not an integer.
        ValueError: seed is negative.

    References: torch.manual_seed.
    """
    global _default_generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
    _default_generator = np.random.default_rng(int(seed))
    return _default_generator


def default_generator() -> np.random.Generator:
    """The current process-wide default generator (replaced by each `manual_seed` call).

    NOTE: hold on to the result only for a moment: after `manual_seed` the default generator is a
    new object, so a generator fetched before the call keeps drawing the old sequence.

    References: torch.default_generator.
    """
    return _default_generator


def resolve_generator(rng=None) -> np.random.Generator:
    """The generator a draw should use: `rng` itself, a new one seeded by it, or the default one.

    Args:
        rng: None (use the default generator, see `manual_seed`), an int seed (a new
            `np.random.default_rng(rng)`), or an `np.random.Generator` (used as is).

    Returns:
        An `np.random.Generator`.

    Raises:
        TypeError: rng is of another type (a float, a bool, a legacy `np.random.RandomState`...).
        ValueError: rng is a negative int.
    """
    if rng is None:
        return _default_generator
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: a seed must be non-negative, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be None, an int seed or a np.random.Generator, got {type(rng).__name__}"
    )


__all__ = ["manual_seed", "default_generator", "resolve_generator"]

"""Small helpers shared by the engine tests."""

import numpy as np

from autograd import tensor


def leaf(array, dtype=np.float64):
    """A leaf tensor that requires grad, float64 by default (for gradient checks)."""
    return tensor(np.asarray(array, dtype=dtype), requires_grad=True)

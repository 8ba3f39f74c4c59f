"""Fast sigmoid and log-sigmoid: the reference kernels, which have no faster form here."""

from autograd.reference.sigmoid import LogSigmoid, Sigmoid  # noqa: F401 - no trick: fast is the reference

__all__ = ["Sigmoid", "LogSigmoid"]

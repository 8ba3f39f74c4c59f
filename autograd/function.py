from autograd.tensor import Function, enable_grad, is_grad_enabled, no_grad  # noqa: F401 - shim; helper A's function.py replaces it

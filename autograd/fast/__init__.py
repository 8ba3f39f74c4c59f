"""The fast kernels: the same ops as `autograd/reference/`, made fast, file for file.

Same file names, class names and `forward` arguments as the reference, so the two sets are
interchangeable (`autograd/kernels.py` switches; fast is the default). Each module's docstring
says what it does differently and the measurement that justifies it: cache-sized blocks of rows,
in-place passes over preallocated buffers, element-wise work shared among threads
(`autograd.parallel.parallel_for`), causal attention that skips masked query blocks, gradients
written during forward. Where there is no trick (sigmoid.py, losses.py) the module reuses the
reference class. tests/test_kernels.py checks that both sets agree, forward and backward.

Nothing is imported here: import the module you need.
"""

"""Check GradientBuckets under `mpirun -n 2` (for tests/test_distributed.py); prints OK on rank 0.

    mpirun -n 2 python tests/support/mpi_buckets_worker.py

Each rank runs forward and backward of a small GPT on its own batch three times: twice with buckets
armed (recording how far backward had got when each bucket was started; the second time regrouped
in the order of the first backward), once plainly followed by one flat Allreduce. The bucketed gradients must equal the flat ones bit for bit (2 ranks: a + b = b + a),
the summed loss must match, and the buckets must have been started during backward, in order.
"""

import numpy as np

from minigpt.distributed import GradientBuckets, init
from minigpt.model import GPTModel, get_config
from minigpt.nn import functional as F

world = init(force=True)
assert world.size == 2, world.size
config = get_config("char", context_length=8, n_layers=2, emb_dim=32, n_heads=2, drop_rate=0.0)
model = GPTModel(config, rng=0)
parameters = list(model.parameters())
rng = np.random.default_rng(100 + world.rank)  # each rank its own batch
inputs, targets = rng.integers(0, config.vocab_size, (2, 2, 8))


def local_loss():
    return F.cross_entropy(model(inputs), targets)


buckets = GradientBuckets(world, parameters, bucket_cap_mb=0.01)  # 2,500 floats: many buckets
assert len(buckets.buckets) > 3
assert [p for bucket in buckets.buckets for p in bucket] == parameters[::-1]  # the last layers first
for bucket in buckets.buckets:
    assert len(bucket) == 1 or sum(p.data.size for p in bucket) * 4 <= 0.01e6

completed, started_at = [0], []
original_hook, original_launch = buckets._gradient_complete, buckets._launch
buckets._gradient_complete = lambda parameter: (completed.__setitem__(0, completed[0] + 1), original_hook(parameter))
buckets._launch = lambda number: (started_at.append((number, completed[0])), original_launch(number))
loss = local_loss()
buckets.arm(loss.item())
loss.backward()
assert [number for number, _ in started_at] == list(range(len(buckets.buckets))), started_at  # all, in order
assert started_at[0][1] < len(parameters), "the first bucket must start before backward ends"
summed_loss = buckets.finish()
bucketed = [p.grad.copy() for p in parameters]
assert all(len(p._post_accumulate_grad_hooks or []) == 0 for p in parameters)  # finish removed the hooks

first_start = started_at[0][1]

# The second step runs with the buckets regrouped in the order backward completed the gradients:
# the first bucket now starts after the few gradients of the output head and the final norm.
model.zero_grad()
completed[0], started_at = 0, []
loss = local_loss()
buckets.arm(loss.item())
loss.backward()
assert [number for number, _ in started_at] == list(range(len(buckets.buckets))), started_at
assert started_at[0][1] <= 4 < first_start, (started_at, first_start)
summed_again = buckets.finish()
for parameter, grad in zip(parameters, bucketed):  # the same gradients as step 1
    np.testing.assert_array_equal(parameter.grad, grad)
assert summed_again == summed_loss

model.zero_grad()
loss = local_loss()
loss.backward()
flat_loss = world.allreduce_gradients(parameters, loss.item())
for parameter, grad in zip(parameters, bucketed):
    np.testing.assert_array_equal(parameter.grad, grad)
assert summed_loss == flat_loss, (summed_loss, flat_loss)
if world.is_main:
    print(f"OK {len(buckets.buckets)} buckets; the first started after {first_start} of {len(parameters)} "
          f"gradients in step 1, after {started_at[0][1]} once regrouped")

"""Shared pytest configuration: hypothesis profiles.

`ci` (chosen automatically when the CI environment variable is set, as in `.ci/run`) is
derandomized: every run draws the same examples, so a red CI is reproducible and never flaky.
`dev` (the default elsewhere) explores new random examples on each run. Select one explicitly with
`pytest --hypothesis-profile=ci`.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The default generator is seeded from the OS's entropy in every process, as PyTorch's; the suite
# starts it from one seed so that a run that draws without seeding is the same run every time.
import autograd  # noqa: E402

autograd.manual_seed(67280421310721)

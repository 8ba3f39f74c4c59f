"""Helpers of the tests, not tests themselves: fake servers (fake_hub: a Hugging Face hub; fake_judge:
an Ollama-style judge), `helpers.leaf`, and the scripts tests start as subprocesses (mpi_worker,
mpi_buckets_worker under mpirun; signal_driver through signal_run.Run). Tests import them as
`from support.fake_hub import FakeHub` (tests/ is on sys.path, as pytest puts it for tests/conftest.py).
"""

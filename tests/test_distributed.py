"""Data-parallel training over MPI (minigpt/distributed.py): `mpirun -n 2 minigpt train` on loopback.

Each test starts mpirun with 2 ranks of a character-level model on the short story (16-token
context, batch 2), a few steps: a few seconds each. Skipped when mpi4py or mpirun is missing
(`pip install -e ".[test,mpi]"`, as .ci/run does).

Dropout: every micro-batch draws its masks from its own stream, seeded by (the run's dropout seed,
step, index in the global batch) (see `Trainer`), so the equality holds with `--drop-rate 0.1` too,
bit for bit: the tests run with dropout 0 and 0.1.

Tolerance: with 2 ranks the Allreduce adds two float32 gradients, rank 0's + rank 1's, and one
process accumulating the same two micro-batches adds the same two arrays (addition is commutative
in IEEE 754), so the weights must be bit-identical. Losses and evaluations are summed in another
order (the step loss travels as float32 in the gradient buffer; evaluation batches are split over
the ranks), so they are compared to a relative 1e-6. With more than 2 ranks the reduction order
of MPI's algorithm differs from the sequential one: equal to float32 rounding (about 1e-7
relative per addition), not bitwise.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from minigpt.cli import main
from minigpt.distributed import SINGLE_PROCESS, check_ranks_agree, fingerprint, init, launched_by_mpi


def _find_mpirun():
    beside_python = os.path.join(os.path.dirname(sys.executable), "mpirun")  # the mpich wheel's, in the venv
    return beside_python if os.path.isfile(beside_python) else shutil.which("mpirun")


MPIRUN = _find_mpirun()
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIRUN is None,
    reason='needs mpi4py and mpirun: pip install -e ".[test,mpi]"',
)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support", "mpi_worker.py")
BUCKETS_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support", "mpi_buckets_worker.py")
FLAGS = ["--preset", "char", "--tokenizer", "char", "--data", "the-verdict.txt", "--context-length", "16", "--batch-size", "2",
         "--warmup-steps", "1", "--eval-every", "2", "--eval-batches", "3", "--sample-tokens", "4", "--threads", "1"]
TIMEOUT = 120  # seconds: a hang fails the test instead of blocking CI


def mpirun(*command, ranks=2):
    """Run `mpirun -n ranks command...`; return (exit status, stdout, stderr, seconds)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PMI_", "OMPI_"))}
    started = time.monotonic()
    done = subprocess.run([MPIRUN, "-n", str(ranks), *command], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def train_with_mpi(*arguments, ranks=2):
    status, out, err, _ = mpirun(sys.executable, "-m", "minigpt", "train", *arguments, ranks=ranks)
    assert status == 0, err[-3000:]
    return out


def checkpoint(directory):
    """(weights, trainer state) of a run directory."""
    model_state, _, metadata = load_checkpoint(os.path.join(directory, CHECKPOINT_NAME))
    return model_state, metadata["trainer"]


def assert_same_run(directory, reference, exact_weights=True):
    weights, state = checkpoint(directory)
    reference_weights, reference_state = checkpoint(reference)
    assert state["step"] == reference_state["step"] and state["tokens_seen"] == reference_state["tokens_seen"]
    assert state["train_loader_state"] == reference_state["train_loader_state"]
    for name, value in reference_weights.items():
        if exact_weights:
            np.testing.assert_array_equal(weights[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(weights[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    history, reference_history = state["history"], reference_state["history"]
    assert history["step"] == reference_history["step"]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(history[key], reference_history[key], rtol=1e-6)


# ---- without mpirun ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["generate", "--checkpoint", "no-such-run", "--prompt", "hi"],
                                     ["finetune", "classify", "--init", "random"], ["prepare", "a.txt", "a.bin"]])
def test_commands_other_than_train_refuse_to_run_once_per_rank(command, monkeypatch):
    # `mpirun -n 2 minigpt finetune classify ...` ran two independent fine-tunings that printed
    # everything twice and wrote the same files. (The launcher's variables, as mpirun sets them.)
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(SystemExit, match=f"minigpt {command[0]}: error: started by mpirun with 2 ranks, but only "
                                         f"`minigpt train` runs data-parallel.*without mpirun"):
        main(command)
    monkeypatch.setenv("PMI_SIZE", "1")  # mpirun -n 1: one process, as without mpirun
    with pytest.raises(SystemExit) as stopped:
        main(["generate", "--checkpoint", "no-such-run", "--prompt", "hi"])
    assert "mpirun" not in str(stopped.value)
    from minigpt.distributed import launched_ranks

    assert launched_ranks({}) == 1 and launched_ranks({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3"}) == 3


def test_a_single_process_gets_the_single_process_world_without_importing_mpi4py():
    assert not launched_by_mpi({})
    assert launched_by_mpi({"PMI_RANK": "0", "PMI_SIZE": "2"}) and launched_by_mpi({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"})
    assert not launched_by_mpi({"PMI_RANK": "0"})  # both variables, or it is not an MPI launch
    code = "import sys; from minigpt.distributed import init; import minigpt.cli.train; w = init(); print(w.size, 'mpi4py' in sys.modules)"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PMI_", "OMPI_"))}
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert printed.split() == ["1", "False"]
    assert init() is SINGLE_PROCESS and SINGLE_PROCESS.allreduce_sum(2.5) == 2.5


def test_fingerprint_sees_dtype_shape_and_every_byte():
    a = np.arange(6, dtype=np.float32)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.float64))
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    b = a.copy()
    b[5] = np.nextafter(b[5], np.float32(10))
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint({"seed": 1}) != fingerprint({"seed": 2})
    check_ranks_agree(SINGLE_PROCESS, weights=[a])  # one process always agrees with itself


def test_a_resumed_run_keeps_its_global_batch_when_the_new_number_of_ranks_divides_it(capsys):
    from minigpt.cli.train import _keep_global_batch
    from minigpt.trainer import TrainingConfig

    config = TrainingConfig(grad_accum_steps=3)
    assert _keep_global_batch(config, 2, 2) is config
    assert _keep_global_batch(config, 2, 1).grad_accum_steps == 6  # 2 ranks x 3 = 1 rank x 6
    assert _keep_global_batch(config, 2, 3).grad_accum_steps == 2
    assert "the same 6 micro-batches per step" in capsys.readouterr().out
    assert _keep_global_batch(config, 2, 4).grad_accum_steps == 3  # 6 micro-batches cannot be split in 4
    assert "the global batch becomes 12 micro-batches" in capsys.readouterr().out


# ---- mpirun -n 2 -------------------------------------------------------------------------------


DROP_RATES = ["0", "0.1"]  # --drop-rate of the equality and resume tests


@pytest.fixture(scope="module")
def single_process_runs(tmp_path_factory):
    """drop_rate -> a folder with 4 steps of one process accumulating 2 micro-batches per step: the
    reference of 2 ranks x 1 (each made once, when a test first asks for it)."""
    runs = {}

    def run(drop_rate: str) -> str:
        if drop_rate not in runs:
            out = str(tmp_path_factory.mktemp(f"single-drop-{drop_rate}"))
            assert main(["train", *FLAGS, "--drop-rate", drop_rate, "--max-steps", "4", "--grad-accum-steps", "2",
                         "--out", out]) == 0
            assert checkpoint(out)[1]["run_info"]["model_config"]["drop_rate"] == float(drop_rate)
            runs[drop_rate] = out
        return runs[drop_rate]

    return run


@needs_mpi
@pytest.mark.parametrize("drop_rate", DROP_RATES)
def test_two_ranks_give_the_weights_of_one_process_with_accumulation(single_process_runs, drop_rate, tmp_path):
    out = str(tmp_path / "mpi")
    printed = train_with_mpi(*FLAGS, "--drop-rate", drop_rate, "--max-steps", "4", "--out", out)
    assert_same_run(out, single_process_runs(drop_rate))  # bit-identical weights (see the module docstring)
    # Rank 0 alone prints: one header, one final line; the log states the global batch.
    assert printed.count("seed: 123 | steps: 4") == 1 and printed.count("final: train loss") == 1
    assert "global batch 2 x 1 (accumulation) x 2 (ranks) = 4 sequences of 16 tokens per step" in printed
    assert checkpoint(out)[1]["run_info"]["ranks"] == 2


def test_dropout_changes_the_reference_run(single_process_runs):
    # Guards the dropout case above: its masks really change the weights.
    with_dropout, without = checkpoint(single_process_runs("0.1"))[0], checkpoint(single_process_runs("0"))[0]
    assert all(not np.array_equal(with_dropout[name], without[name]) for name in ("tok_emb.weight", "out_head.weight"))


@needs_mpi
def test_gradient_buckets_started_during_backward_give_the_weights_of_one_allreduce(tmp_path):
    # 2 ranks x 2 micro-batches with buckets of 0.05 MB (the char model's 3.3 MB of gradients in
    # many buckets; only the last backward of each step sends): bit for bit the run with one
    # Allreduce after backward (both add the same two partial sums), and equal to float32
    # rounding to one process x 4 micro-batches, which adds the four in another order.
    flat, out, single = str(tmp_path / "flat"), str(tmp_path / "buckets"), str(tmp_path / "single")
    flags = [*FLAGS, "--drop-rate", "0.1", "--max-steps", "3"]
    train_with_mpi(*flags, "--grad-accum-steps", "2", "--out", flat)
    printed = train_with_mpi(*flags, "--grad-accum-steps", "2", "--bucket-cap-mb", "0.05", "--out", out)
    assert "bucket(s) of at most 0.05 MB, started during backward" in printed
    assert_same_run(out, flat)
    assert main(["train", *flags, "--grad-accum-steps", "4", "--out", single]) == 0
    assert_same_run(out, single, exact_weights=False)


@needs_mpi
def test_gradient_buckets_start_in_order_during_backward_and_sum_as_one_allreduce():
    status, printed, errors, _ = mpirun(sys.executable, BUCKETS_WORKER)
    assert status == 0, errors[-3000:]
    assert printed.startswith("OK"), printed + errors[-3000:]


def test_gradient_buckets_group_parameters_from_the_last_layer_within_the_cap():
    from minigpt.distributed import GradientBuckets, World
    from minigpt.nn.module import Parameter

    sizes = [10, 3000, 200, 200, 200, 5]  # float32 elements; the cap of 0.004 MB is 1,000 elements
    parameters = [Parameter(np.zeros(size, dtype=np.float32)) for size in sizes]
    frozen = Parameter(np.zeros(7, dtype=np.float32))
    frozen.requires_grad = False
    buckets = GradientBuckets(World(rank=0, size=2), parameters[:3] + [frozen] + parameters[3:], bucket_cap_mb=0.004)
    assert [[p.data.size for p in bucket] for bucket in buckets.buckets] == [[5, 200, 200, 200], [3000], [10]]
    for bad in (0, -1.0, float("nan"), float("inf"), True, "25"):
        with pytest.raises(ValueError, match="bucket_cap_mb must be a positive, finite number of megabytes"):
            GradientBuckets(World(rank=0, size=2), parameters, bucket_cap_mb=bad)


@pytest.mark.parametrize("value", ["-2", "-0.5", "nan", "inf"])
def test_train_rejects_a_bucket_cap_that_is_not_a_number_of_megabytes(value, tmp_path):
    with pytest.raises(SystemExit, match=rf"--bucket-cap-mb must be a number of megabytes >= 0 \(0: one Allreduce after backward\), got {value}"):
        main(["train", *FLAGS, "--max-steps", "1", "--bucket-cap-mb", value, "--out", str(tmp_path / "x")])
    assert not os.path.exists(tmp_path / "x")


def test_buckets_by_default_only_when_the_ranks_span_several_machines():
    from minigpt.cli.train import MULTI_MACHINE_BUCKET_CAP_MB, _bucket_cap_mb
    from minigpt.distributed import World

    one_machine, two_machines = World(rank=0, size=4, local_size=4), World(rank=0, size=4, local_size=2)
    assert _bucket_cap_mb(None, one_machine) is None and _bucket_cap_mb(None, SINGLE_PROCESS) is None
    assert _bucket_cap_mb(None, two_machines) == MULTI_MACHINE_BUCKET_CAP_MB == 25.0
    assert _bucket_cap_mb(0.0, two_machines) is None  # 0: one Allreduce after backward
    assert _bucket_cap_mb(5.0, one_machine) == 5.0


@needs_mpi
@pytest.mark.parametrize("drop_rate", DROP_RATES)
def test_a_two_rank_run_resumed_with_one_process_or_two_continues_exactly(single_process_runs, drop_rate, tmp_path):
    half = str(tmp_path / "half")
    train_with_mpi(*FLAGS, "--drop-rate", drop_rate, "--max-steps", "2", "--out", half)
    assert checkpoint(half)[1]["step"] == 2
    with_one, with_two = str(tmp_path / "one"), str(tmp_path / "two")
    shutil.copytree(half, with_one)
    shutil.copytree(half, with_two)
    # One process takes over: it accumulates 2 micro-batches per step, the same global batch.
    # (--threads 1 as the ranks had: a run resumed with another number of ranks takes the
    # process's thread count, and BLAS sums split over threads in another order.)
    assert main(["train", "--resume", with_one, "--max-steps", "4", "--threads", "1"]) == 0
    assert_same_run(with_one, single_process_runs(drop_rate))
    printed = train_with_mpi("--resume", with_two, "--max-steps", "4")
    assert "resuming" in printed
    assert_same_run(with_two, single_process_runs(drop_rate))


@needs_mpi
def test_a_one_process_run_with_dropout_resumed_with_two_ranks_continues_exactly(single_process_runs, tmp_path):
    out = str(tmp_path / "half")
    assert main(["train", *FLAGS, "--drop-rate", "0.1", "--max-steps", "2", "--grad-accum-steps", "2", "--out", out]) == 0
    printed = train_with_mpi("--resume", out, "--max-steps", "4")
    assert "continuing with 2 rank(s) x 1" in printed
    assert_same_run(out, single_process_runs("0.1"))


@needs_mpi
@pytest.mark.parametrize("fault, message", [
    ("raise", "RuntimeError: injected failure on rank 1"),
    ("kill", ""),  # mpirun reports the killed process in its own words
    ("nan", "training diverged"),
])
def test_a_failing_rank_stops_every_rank_and_the_last_checkpoint_stays_valid(fault, message, tmp_path):
    out = str(tmp_path / fault)
    status, printed, errors, seconds = mpirun(sys.executable, WORKER, fault, "--", *FLAGS, "--max-steps", "6",
                                              "--checkpoint-every", "1", "--out", out)
    assert status != 0, printed + errors
    assert message in errors, errors[-3000:]
    if fault == "raise":
        assert "[rank 1 of 2]" in errors and "aborting every rank" in errors
    assert seconds < TIMEOUT
    # Rank 0 saves step 2 while rank 1 already fails in step 3: the abort may come before or
    # during that save, which is atomic, so the file holds step 1 or step 2, intact either way.
    weights, state = checkpoint(out)
    assert state["step"] in (1, 2)
    assert all(np.isfinite(value).all() for value in weights.values())


@needs_mpi
def test_ranks_that_disagree_on_the_seed_stop_at_start_up(tmp_path):
    status, printed, errors, _ = mpirun(sys.executable, WORKER, "seed", "--", *FLAGS, "--max-steps", "2",
                                        "--out", str(tmp_path / "seed"))
    assert status != 0
    assert "the ranks of this run disagree on weights (ranks 1 differ from rank 0)" in errors, errors[-3000:]
    assert "training_config (ranks 1" in errors and "data (ranks" not in errors  # same data, other seed
    # A command error on every rank (as a wrong flag), not a traceback:
    assert "minigpt train: error: the ranks of this run disagree" in errors and "Traceback" not in errors, errors[-3000:]
    assert not os.path.exists(os.path.join(tmp_path, "seed", CHECKPOINT_NAME))


@needs_mpi
def test_a_command_error_on_one_rank_aborts_the_others(tmp_path):
    # Rank 1's `minigpt train: error: ...` (SystemExit) while rank 0 waits in the start-up check.
    status, printed, errors, seconds = mpirun(sys.executable, WORKER, "data", "--", *FLAGS, "--max-steps", "2",
                                              "--out", str(tmp_path / "data"))
    assert status != 0 and seconds < TIMEOUT
    assert "[rank 1 of 2] minigpt train: error: --data 'no-such-file.txt': no such file" in errors, errors[-3000:]


def test_rank_0_alone_prints_the_stop_messages(capfd):
    # Under mpirun Ctrl-C reaches every rank: each printed "stopping at the end of this step ...",
    # so the log showed the line twice as if Ctrl-C had been pressed twice.
    from minigpt.interrupts import StopRequests

    for quiet, printed in ((False, True), (True, False)):
        stops = StopRequests(quiet=quiet)
        with stops.defer():
            stops._handle(signal.SIGINT, None)  # the first press, during an update
            stops._handle(signal.SIGINT, None)  # the second, as while saving
        errors = capfd.readouterr().err
        assert ("stopping at the end of this step" in errors and "press Ctrl-C again" in errors) == printed, errors


@needs_mpi
def test_ctrl_c_stops_every_rank_and_leaves_a_checkpoint_to_resume(tmp_path):
    # mpirun forwards SIGINT to both ranks; rank 0 saves the last completed step and aborts the
    # run (or, if it was waiting in an Allreduce, rank 1 aborts it after $MINIGPT_ABORT_AFTER_SECONDS,
    # lowered from 30 s here; that case has its own test below).
    out = str(tmp_path / "interrupted")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PMI_", "OMPI_"))}
    env["MINIGPT_ABORT_AFTER_SECONDS"] = "10"
    process = subprocess.Popen([MPIRUN, "-n", "2", sys.executable, "-m", "minigpt", "train", *FLAGS, "--max-steps", "100000",
                                "--checkpoint-every", "1", "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(os.path.join(out, CHECKPOINT_NAME)) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    try:
        _, errors = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode != 0
    assert errors.count(b"stopping at the end of this step") <= 1, errors[-3000:]  # rank 0's only
    _, state = checkpoint(out)
    assert 1 <= state["step"] < 100000
    assert main(["train", "--resume", out, "--max-steps", str(state["step"] + 1)]) == 0
    assert checkpoint(out)[1]["step"] == state["step"] + 1


def test_the_wait_for_rank_0_after_a_stop_comes_from_the_environment(monkeypatch):
    from minigpt.cli.train import DEFAULT_ABORT_AFTER_SECONDS, abort_after_seconds

    assert abort_after_seconds({}) == DEFAULT_ABORT_AFTER_SECONDS == 30
    assert abort_after_seconds({"MINIGPT_ABORT_AFTER_SECONDS": " 2.5 "}) == 2.5
    assert abort_after_seconds({"MINIGPT_ABORT_AFTER_SECONDS": "0"}) == 0
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(SystemExit, match=f"MINIGPT_ABORT_AFTER_SECONDS must be a number of seconds >= 0 .*got '{bad}'"):
            abort_after_seconds({"MINIGPT_ABORT_AFTER_SECONDS": bad})
    monkeypatch.setenv("MINIGPT_ABORT_AFTER_SECONDS", "4")
    assert abort_after_seconds() == 4


@needs_mpi
def test_ctrl_c_while_rank_0_waits_in_the_allreduce_ends_the_run_after_the_timeout(single_process_runs, tmp_path):
    # Rank 0 is left in step 3's Allreduce: rank 1 stops before it on Ctrl-C (tests/support/mpi_worker.py,
    # fault "stall"). Rank 0 cannot save; rank 1 ends the run after $MINIGPT_ABORT_AFTER_SECONDS and
    # the periodic checkpoint of step 2 remains, valid and resumable.
    out, markers, seconds = str(tmp_path / "stalled"), tmp_path / "markers", 3
    markers.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PMI_", "OMPI_"))}
    env.update(MINIGPT_ABORT_AFTER_SECONDS=str(seconds), MPI_WORKER_MARKERS=str(markers))
    process = subprocess.Popen([MPIRUN, "-n", "2", sys.executable, WORKER, "stall", "--", *FLAGS, "--max-steps", "4",
                                "--grad-accum-steps", "1", "--checkpoint-every", "1", "--out", out],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all((markers / f"stalled-rank-{rank}").exists() for rank in (0, 1)):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        printed, errors = process.communicate(timeout=TIMEOUT)
        waited = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode != 0
    assert ("[rank 1 of 2] rank 0 did not end the run within 3 s of the stop ($MINIGPT_ABORT_AFTER_SECONDS): it is "
            "probably waiting in the step's Allreduce; aborting every rank") in errors, errors[-3000:]
    # Rank 1 waited the whole timeout (rank 0 did not end the run), then ended it within seconds
    # (1 s of World.abort's delay for the message, then mpirun's teardown; generous on a loaded machine).
    assert seconds <= waited < seconds + 30, waited
    assert "checkpoint of step 2 saved" not in printed  # rank 0 never got to save after the signal
    weights, state = checkpoint(out)
    assert state["step"] == 2 and all(np.isfinite(value).all() for value in weights.values())
    # The run resumes from it (one process, accumulating the 2 ranks' micro-batches) exactly.
    assert main(["train", "--resume", out, "--max-steps", "4", "--threads", "1"]) == 0
    assert_same_run(out, single_process_runs("0"))

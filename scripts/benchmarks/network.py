"""Benchmark: MPI data-parallel training over simulated hosts, each behind a throttled network link.

Checks the cost model of data-parallel training in docs/mpi.md (the ring Allreduce of Patarasuk & Yuan 2009),

    T_step(N) = T_compute + T_allreduce(N),   T_allreduce(N) = 2 (N - 1) / N x G / B + 2 (N - 1) x L,

against a network simulated on this machine: N Linux network namespaces `mgsim-h0`,
`mgsim-h1`, ... (the hosts, addresses 10.77.0.1, 10.77.0.2, ...), each with a veth pair into a
bridge `mgsim-br` in the namespace `mgsim-switch` (10.77.0.254), and a token-bucket filter
(`tc qdisc ... tbf rate B`) on both directions of every host's link: the host's egress and the
switch's egress toward the host. Every host thus has a full-duplex link of rate B to a
non-blocking switch. MPICH's hydra launches one rank per host: `mpiexec` runs in the switch's
namespace (`-localhost 10.77.0.254`), and its `ssh` launcher is replaced by a small script that
runs the proxy with `ip netns exec mgsim-hI` instead of ssh. The ranks talk over TCP
(libfabric's tcp provider on the namespace's `eth0`, `MPIR_CVAR_NOLOCAL=1`: no shared memory),
which the 1 / B scaling of the measured Allreduce confirms.

Subcommands (all need root, `ip` and `tc` from iproute2, and the `mpi` extra):

    python scripts/bench.py network allreduce                 # 2a: Allreduce of the real gradient sizes, N = 2, 3, 4
    python scripts/bench.py network steps                     # 2b: whole training steps on 2 hosts vs the prediction
    python scripts/bench.py network run --hosts 2 --rate 1gbit -- minigpt train --preset char --max-steps 20

The namespaces are created at the start (leftovers of an earlier run deleted first) and deleted
at the end, also on an error, Ctrl-C or SIGTERM. All ranks share this machine's cores: the link
is simulated, the CPUs are not, so copies, the reduction and the kernel's work on the packets
compete with each other (the report says where that, not the link, limits a case).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

PREFIX = "mgsim"
SWITCH_NAMESPACE = f"{PREFIX}-switch"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.77.0"
SWITCH_ADDRESS = f"{SUBNET}.254"
HOST_INTERFACE = "eth0"  # the host's end of its link, inside its namespace
MAX_HOSTS = 16
LOCK_FILE = os.path.join(tempfile.gettempdir(), f"{PREFIX}.lock")  # one simulated network at a time

# Every rank talks TCP over its namespace's eth0: libfabric's tcp provider (the UCX netmod, MPICH's
# default here, would use shared memory between processes of one machine), and no rank counts as
# local to another, whatever the hostname (all namespaces share the machine's hostname).
MPI_ENVIRONMENT = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": HOST_INTERFACE,
                   "MPIR_CVAR_NOLOCAL": "1"}

# tc's decimal rate units (bits per second); `tc` reads "1gbit" as 10^9 bit/s.
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}


class SimulationUnavailable(RuntimeError):
    """The simulated network cannot be built here: not root, `ip`, `tc` or `mpiexec` missing, or a command failed."""


def parse_rate(text: str) -> float:
    """A link rate in tc's notation ("1gbit", "2.5gbit", "100mbit") as bits per second (float).

    Raises ValueError naming the value when it is not a positive number followed by bit, kbit,
    mbit, gbit or tbit (tc's "bps" means bytes per second: not accepted, to avoid the confusion).
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]+)\s*", str(text))
    if match is None or match.group(2).lower() not in _RATE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"rate: expected a positive number with a unit among {', '.join(_RATE_UNITS)} "
                         f"(e.g. 1gbit, 2.5gbit), got {text!r}")
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]


def format_rate(bits_per_second: float) -> str:
    """A rate in bits per second as a short label: 1e9 -> "1 Gbit/s", 2.5e9 -> "2.5 Gbit/s"."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:g} {unit}"
    return f"{bits_per_second:g} bit/s"


def host_namespace(index: int) -> str:
    """The network namespace of simulated host `index` (0-based): "mgsim-h0", "mgsim-h1", ..."""
    return f"{PREFIX}-h{index}"


def host_address(index: int) -> str:
    """The IPv4 address of simulated host `index` (0-based): 10.77.0.1, 10.77.0.2, ..."""
    return f"{SUBNET}.{index + 1}"


def _check_hosts(hosts: int) -> None:
    if not isinstance(hosts, int) or isinstance(hosts, bool) or not 1 <= hosts <= MAX_HOSTS:
        raise ValueError(f"hosts: expected an integer from 1 to {MAX_HOSTS}, got {hosts!r}")


def tbf_burst_bytes(rate_bits: float) -> int:
    """Bucket size of the token-bucket filter for a rate: 1 ms of traffic, at least 128 KiB.

    At least two 64 KiB GSO packets (veth hands TCP segments of up to 64 KiB to the qdisc), so
    the filter never has to split them; 1 ms at the rate so that a timer firing a little late does
    not lower the rate. A burst lets that much pass at once after an idle moment: under 1 ms of
    transfer, small against the Allreduce times measured here.
    """
    return max(int(rate_bits / 8 * 1e-3), 128 * 1024)


def rate_commands(hosts: int, rate_bits: float) -> list[list[str]]:
    """`tc` commands limiting both directions of each host's link to `rate_bits` (replacing any earlier limit)."""
    _check_hosts(hosts)
    limit = ["tbf", "rate", f"{round(rate_bits)}bit", "burst", str(tbf_burst_bytes(rate_bits)), "latency", "50ms"]
    commands = []
    for index in range(hosts):
        commands.append(["ip", "netns", "exec", host_namespace(index), "tc", "qdisc", "replace", "dev", HOST_INTERFACE,
                         "root", *limit])  # host -> switch
        commands.append(["ip", "netns", "exec", SWITCH_NAMESPACE, "tc", "qdisc", "replace", "dev", f"{PREFIX}-p{index}",
                         "root", *limit])  # switch -> host
    return commands


def setup_commands(hosts: int, rate_bits: float) -> list[list[str]]:
    """The `ip` and `tc` commands that build the switch, `hosts` hosts and their throttled links."""
    _check_hosts(hosts)
    commands = [["ip", "netns", "add", SWITCH_NAMESPACE],
                ["ip", "-n", SWITCH_NAMESPACE, "link", "set", "lo", "up"],
                ["ip", "-n", SWITCH_NAMESPACE, "link", "add", BRIDGE, "type", "bridge"],
                ["ip", "-n", SWITCH_NAMESPACE, "addr", "add", f"{SWITCH_ADDRESS}/24", "dev", BRIDGE],
                ["ip", "-n", SWITCH_NAMESPACE, "link", "set", BRIDGE, "up"]]
    for index in range(hosts):
        namespace, port, end = host_namespace(index), f"{PREFIX}-p{index}", f"{PREFIX}-h{index}-eth"
        commands += [["ip", "netns", "add", namespace],
                     ["ip", "link", "add", end, "type", "veth", "peer", "name", port],
                     ["ip", "link", "set", end, "netns", namespace, "name", HOST_INTERFACE],
                     ["ip", "link", "set", port, "netns", SWITCH_NAMESPACE],
                     ["ip", "-n", SWITCH_NAMESPACE, "link", "set", port, "master", BRIDGE],
                     ["ip", "-n", SWITCH_NAMESPACE, "link", "set", port, "up"],
                     ["ip", "-n", namespace, "link", "set", "lo", "up"],
                     ["ip", "-n", namespace, "addr", "add", f"{host_address(index)}/24", "dev", HOST_INTERFACE],
                     ["ip", "-n", namespace, "link", "set", HOST_INTERFACE, "up"]]
    return commands + rate_commands(hosts, rate_bits)


def teardown_commands(namespace_list: str, root_links: str) -> list[list[str]]:
    """Commands deleting every `mgsim-` namespace and root-namespace link named in the two listings.

    `namespace_list` is the output of `ip netns list` ("mgsim-h0 (id: 1)" per line), `root_links`
    that of `ip -o link show` ("7: mgsim-h0-eth@mgsim-p0: <...>"). Deleting a namespace deletes the
    veth ends inside it and their peers; a link left in the root namespace by an interrupted setup
    is deleted by name.
    """
    commands = []
    for line in namespace_list.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            commands.append(["ip", "netns", "delete", name])
    for line in root_links.splitlines():
        fields = line.split(":")
        name = fields[1].strip().split("@")[0] if len(fields) > 2 else ""
        if name.startswith(f"{PREFIX}-"):
            commands.append(["ip", "link", "delete", name])
    return commands


def launcher_script(hosts: int) -> str:
    """The shell script hydra runs instead of ssh: "[options] HOST COMMAND" -> `ip netns exec` HOST's namespace.

    Hydra calls its ssh launcher as `LAUNCHER -x HOST "proxy" --control-port ...`; the script drops
    the options, maps the host's address to its namespace and runs the command there through a shell
    (ssh would also hand it to the remote shell, which removes hydra's quotes). An unknown host is an
    error naming it.
    """
    _check_hosts(hosts)
    cases = "\n".join(f"  {host_address(index)}) namespace={host_namespace(index)} ;;" for index in range(hosts))
    return ("#!/bin/sh\n"
            "# hydra's ssh launcher replaced by `ip netns exec` (scripts/benchmarks/network.py)\n"
            "while [ $# -gt 0 ]; do case \"$1\" in -*) shift ;; *) break ;; esac; done\n"
            "host=$1; shift\n"
            "case \"$host\" in\n"
            f"{cases}\n"
            "  *) echo \"mgsim launcher: unknown simulated host '$host'\" >&2; exit 255 ;;\n"
            "esac\n"
            "exec ip netns exec \"$namespace\" sh -c \"$*\"\n")


def mpiexec_command(hosts: int, command: list[str], launcher: str, mpiexec: str = "mpiexec",
                    environment: dict | None = None) -> list[str]:
    """The command that runs `command` as `hosts` MPI ranks, one on each simulated host.

    `mpiexec` itself runs in the switch's namespace, so that the proxies reach it over the network;
    `launcher` is the path of the `launcher_script`; `environment` adds variables for the ranks to
    MPI_ENVIRONMENT's (the ranks also inherit this process's environment, as hydra passes it all).
    Raises ValueError for an empty command.
    """
    _check_hosts(hosts)
    if not command:
        raise ValueError("command: expected the command to run on the simulated hosts, got nothing")
    environment = [item for name, value in {**MPI_ENVIRONMENT, **(environment or {})}.items()
                   for item in ("-genv", name, value)]
    return ["ip", "netns", "exec", SWITCH_NAMESPACE, mpiexec, "-localhost", SWITCH_ADDRESS,
            "-launcher", "ssh", "-launcher-exec", launcher,
            "-hosts", ",".join(host_address(index) for index in range(hosts)), "-n", str(hosts), "-ppn", "1",
            *environment, *command]


def predicted_allreduce_seconds(gradient_bytes: float, hosts: int, bandwidth_bits: float, latency_s: float) -> float:
    """docs/mpi.md's ring-Allreduce time: 2 (N - 1) / N x G / B + 2 (N - 1) x L, seconds.

    `gradient_bytes` G (bytes), `hosts` N, `bandwidth_bits` B (bits per second, as tc's rate),
    `latency_s` L (seconds per message). Patarasuk & Yuan 2009: a reduce-scatter and an all-gather,
    each N - 1 messages of G / N bytes per rank. Raises ValueError for N < 1 or B <= 0.
    """
    if hosts < 1:
        raise ValueError(f"hosts: expected at least 1, got {hosts}")
    if bandwidth_bits <= 0:
        raise ValueError(f"bandwidth_bits: expected a positive rate, got {bandwidth_bits}")
    return 2 * (hosts - 1) / hosts * gradient_bytes / (bandwidth_bits / 8) + 2 * (hosts - 1) * latency_s


def scaling_efficiency(compute_s: float, step_s: float) -> float:
    """E = T_compute / T_step (weak scaling: the work per rank stays, the step grows by the communication)."""
    return compute_s / step_s


def find_mpiexec() -> str | None:
    """The `mpiexec` beside this Python (the mpich wheel's hydra), else the one on PATH, else None."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def check_requirements(euid: int | None = None, which=shutil.which, mpiexec: str | None = "find") -> str:
    """Raise SimulationUnavailable unless this process is root and `ip`, `tc` and `mpiexec` exist; return mpiexec's path."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise SimulationUnavailable(f"the simulated network needs root (network namespaces, tc); this process runs as "
                                    f"user id {euid}: run it as root (e.g. `sudo -E env PATH=$PATH python scripts/bench.py network ...`)")
    missing = [tool for tool in ("ip", "tc") if which(tool) is None]
    if missing:
        raise SimulationUnavailable(f"the simulated network needs {' and '.join(repr(tool) for tool in missing)} "
                                    f"from iproute2, not found on PATH (apt-get install iproute2)")
    mpiexec = find_mpiexec() if mpiexec == "find" else mpiexec
    if mpiexec is None:
        raise SimulationUnavailable("the simulated network needs MPICH's mpiexec (hydra): pip install -e \".[mpi]\"")
    return mpiexec


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SimulationUnavailable(f"{' '.join(command)} failed (status {done.returncode}): {done.stderr.strip()}")
    return done


class SimulatedNetwork:
    """`hosts` simulated hosts on a switch, links limited to `rate_bits` each way; a context manager.

    Entering takes LOCK_FILE (a second simulation at the same time would delete this one's
    namespaces: it fails at once, saying so), deletes the leftovers of an earlier run, builds the
    namespaces and writes the launcher script to a temporary folder; leaving deletes them all, also
    after an exception. `set_rate`
    changes every link's rate; `mpiexec(command)` builds the command that runs one rank per host
    (the first `ranks` hosts); `in_host(index, command)` one that runs a command on one host.
    """

    def __init__(self, hosts: int, rate_bits: float):
        _check_hosts(hosts)
        self.hosts, self.rate_bits = hosts, rate_bits
        self.mpiexec_path = check_requirements()
        self.folder = self.lock = None

    @staticmethod
    def delete_leftovers() -> None:
        """Delete every `mgsim-` namespace and root-namespace link (of this or an earlier run)."""
        namespaces = _run(["ip", "netns", "list"], check=False).stdout
        links = _run(["ip", "-o", "link", "show"], check=False).stdout
        for command in teardown_commands(namespaces, links):
            _run(command, check=False)

    def __enter__(self) -> SimulatedNetwork:
        self.lock = open(LOCK_FILE, "a+", encoding="ascii")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            self.lock = None
            raise SimulationUnavailable(f"another simulated network is in use (lock {LOCK_FILE} held): "
                                        f"wait for that `python scripts/bench.py network` to finish") from None
        try:
            self.delete_leftovers()
            for command in setup_commands(self.hosts, self.rate_bits):
                _run(command)
            self.folder = tempfile.mkdtemp(prefix=f"{PREFIX}-")
            self.launcher = os.path.join(self.folder, "launcher.sh")
            with open(self.launcher, "w", encoding="ascii") as file:
                file.write(launcher_script(self.hosts))
            os.chmod(self.launcher, 0o755)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exception) -> None:
        self.delete_leftovers()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.lock is not None:
            self.lock.close()  # releases the lock
            self.lock = None

    def set_rate(self, rate_bits: float) -> None:
        """Limit both directions of every host's link to `rate_bits` bits per second."""
        for command in rate_commands(self.hosts, rate_bits):
            _run(command)
        self.rate_bits = rate_bits

    def mpiexec(self, command: list[str], ranks: int | None = None, environment: dict | None = None) -> list[str]:
        """The command running `command` as one MPI rank on each of the first `ranks` hosts (default all)."""
        ranks = self.hosts if ranks is None else ranks
        if not 1 <= ranks <= self.hosts:
            raise ValueError(f"ranks: expected 1 to {self.hosts} (the simulated hosts), got {ranks}")
        return mpiexec_command(ranks, command, self.launcher, self.mpiexec_path, environment)

    @staticmethod
    def in_host(index: int, command: list[str]) -> list[str]:
        """`command` run inside simulated host `index`'s namespace."""
        return ["ip", "netns", "exec", host_namespace(index), *command]


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the `with`, which deletes the namespaces


# --- what runs inside the simulated hosts -------------------------------------------------------

def allreduce_worker(sizes: list[int], repeats: int) -> dict | None:
    """Time an in-place float32 Allreduce of each size (bytes) after a barrier; the slowest rank's time counts.

    One untimed call first (connections are set up lazily). Messages under 1 MB are timed at least
    20 times (they are quick, and their times vary most). Returns, on rank 0, {size: [seconds per repeat]}.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    times = {}
    for size in sizes:
        buffer = np.ones(max(size // 4, 1), dtype=np.float32)
        comm.Allreduce(MPI.IN_PLACE, buffer)
        times[str(size)] = []
        for _ in range(repeats if size >= 1_000_000 else max(repeats, 20)):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer)
            times[str(size)].append(comm.allreduce(time.perf_counter() - start, op=MPI.MAX))
        del buffer
    return {"ranks": comm.size, "seconds": times} if comm.rank == 0 else None


def tcp_server(address: str, port: int) -> None:
    """Accept one connection, read until it closes, answer one byte (the end of `tcp_client`'s timing)."""
    with socket.create_server((address, port)) as server:
        connection, _ = server.accept()
        with connection:
            buffer = bytearray(1 << 20)
            while connection.recv_into(buffer):
                pass
            connection.sendall(b"x")


def tcp_client(address: str, port: int, megabytes: float) -> float:
    """Send `megabytes` MB over one TCP connection; return the goodput in bits per second."""
    deadline = time.monotonic() + 10
    while True:  # the server may still be starting
        try:
            connection = socket.create_connection((address, port), timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with connection:
        chunk, total, sent = bytes(1 << 20), int(megabytes * 1e6), 0
        start = time.perf_counter()
        while sent < total:
            connection.sendall(chunk)
            sent += len(chunk)
        connection.shutdown(socket.SHUT_WR)
        connection.recv(1)
        return sent * 8 / (time.perf_counter() - start)


# --- measurements ------------------------------------------------------------------------------

def gradient_bytes(name: str) -> int:
    """Bytes of the float32 gradients of configuration `name` of `benchmarks.model` (as `bench distributed` sends)."""
    from benchmarks.model import CONFIGS
    from minigpt.model import GPTModel

    return 4 * GPTModel(CONFIGS[name][0], rng=0).num_parameters()


def _json_result(command: list[str], env: dict | None = None) -> dict:
    from benchmarks.model import _last_json_line

    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (status {done.returncode}):\n{done.stderr[-3000:]}")
    return _last_json_line(done.stdout, command)


def measure_tcp(network: SimulatedNetwork, megabytes: float) -> float:
    """Goodput of one TCP connection from host 0 to host 1, bits per second (what the link really carries)."""
    from benchmarks import child_python_path

    me = [sys.executable, "-m", "benchmarks.network"]
    environment = {**os.environ, "PYTHONPATH": child_python_path(os.environ)}  # `-m benchmarks.network` outside scripts/
    server = subprocess.Popen(network.in_host(1, [*me, "tcp-server", host_address(1), "5201"]), env=environment)
    try:
        result = _json_result(network.in_host(0, [*me, "tcp-client", host_address(1), "5201", str(megabytes)]),
                              env=environment)
    finally:
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the client never connected: do not leave the server waiting
            server.kill()
            server.wait()
    return result["bits_per_second"]


# MPICH's choice of Allreduce algorithm (MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM): "auto" lets it pick by
# size and rank count, "ring" is the model's ring.
ALGORITHMS = ("auto", "ring", "recursive_doubling", "reduce_scatter_allgather")


def measure_allreduce(network: SimulatedNetwork, ranks: int, sizes: list[int], repeats: int, algorithm: str = "auto") -> dict:
    """{size: median seconds} of `allreduce_worker` on the first `ranks` simulated hosts with MPICH's `algorithm`."""
    from benchmarks.model import _child_env

    command = [sys.executable, "-m", "benchmarks.network", "allreduce-worker", "--repeats", str(repeats),
               "--sizes", *map(str, sizes)]

    environment = {"MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": algorithm}
    record = _json_result(network.mpiexec(command, ranks, environment), env=_child_env(1))
    return {int(size): statistics.median(seconds) for size, seconds in record["seconds"].items()}


def allreduce_table(results: dict, names: dict, latency: dict) -> list[str]:
    """Lines of the Allreduce table: measured (median over rounds) against the model, per algorithm, rate, N and size.

    `results[(algorithm, rate, ranks, size)]` lists the per-round medians (seconds); `names[size]`
    labels a size; `latency[rate]` is the L (seconds) taken for that rate.
    """
    lines = [f"{'algorithm':>24} {'rate':>11} {'N':>2} {'message':>20} {'measured':>11} {'predicted':>11} "
             f"{'measured/predicted':>19} {'GB/s per link':>14}"]
    for (algorithm, rate, ranks, size), rounds in sorted(results.items()):
        measured = statistics.median(rounds)
        predicted = predicted_allreduce_seconds(size, ranks, rate, latency[rate])
        # bytes each rank sends in the model's ring, over the measured time
        per_link = 2 * (ranks - 1) / ranks * size / measured / 1e9
        lines.append(f"{algorithm:>24} {format_rate(rate):>11} {ranks:>2} {names[size]:>20} {measured * 1e3:8.2f} ms "
                     f"{predicted * 1e3:8.2f} ms {measured / predicted:19.2f} {per_link if size > 8 else float('nan'):14.3f}")
    return lines


def latency_from_small_messages(results: dict, rate: float, size: int = 8, algorithm: str = "auto",
                                max_ranks: int = 2) -> float:
    """L (seconds) at `rate`: the `size`-byte Allreduce time / (2 (N - 1)), as the model puts it; median over N.

    Only N <= `max_ranks` (the CPUs): with more ranks than cores, a waiting rank spins on a core
    another rank needs, and a small message waits for the scheduler (milliseconds), not the network.
    Raises ValueError when no such measurement is in `results`.
    """
    values = [statistics.median(rounds) / (2 * (ranks - 1)) for (name, at, ranks, bytes_), rounds in results.items()
              if name == algorithm and at == rate and bytes_ == size and 1 < ranks <= max_ranks]
    if not values:
        raise ValueError(f"results: no {size}-byte Allreduce of {algorithm!r} at {format_rate(rate)} with 2 to {max_ranks} ranks")
    return statistics.median(values)


def run_allreduce(args) -> None:
    """`allreduce`: TCP goodput and Allreduce times on the simulated hosts, against the cost model."""
    rates = [parse_rate(rate) for rate in args.rates]
    names = {8: "8 B (latency)"}
    for name in args.configs:
        size = gradient_bytes(name)
        names[size] = f"{name} {size / 1e6:.1f} MB"
    sizes = sorted(names)
    results, goodput = {}, {}
    print(f"simulated hosts: up to {max(args.hosts)}, one rank each; rates {', '.join(map(format_rate, rates))}; "
          f"MPICH Allreduce algorithms {', '.join(args.algorithms)}; {args.rounds} round(s) x {args.repeats} repeats "
          f"(median); {os.cpu_count()} CPUs shared by all ranks", flush=True)
    with SimulatedNetwork(max(args.hosts), rates[0]) as network:
        for round_index in range(args.rounds):
            for rate in rates:
                network.set_rate(rate)
                goodput.setdefault(rate, []).append(measure_tcp(network, args.tcp_megabytes))
                for algorithm in args.algorithms:
                    for ranks in args.hosts:
                        measured = measure_allreduce(network, ranks, sizes, args.repeats, algorithm)
                        for size, seconds in measured.items():
                            results.setdefault((algorithm, rate, ranks, size), []).append(seconds)
                    print(f"  round {round_index + 1}, {format_rate(rate)}, TCP {goodput[rate][-1] / 1e9:.2f} Gbit/s, {algorithm}: "
                          + ", ".join(f"N={ranks} {results[(algorithm, rate, ranks, sizes[-1])][-1] * 1e3:.0f} ms"
                                      for ranks in args.hosts), flush=True)
    latencies = {}
    for rate in rates:
        latencies[rate] = latency_from_small_messages(results, rate, algorithm=args.algorithms[0],
                                                      max_ranks=max(2, os.cpu_count() or 2)) if min(args.hosts) > 1 else 0.0
        print(f"{format_rate(rate)}: one TCP connection carries {statistics.median(goodput[rate]) / 1e9:.2f} Gbit/s "
              f"({100 * statistics.median(goodput[rate]) / rate:.0f} % of the rate); L = {latencies[rate] * 1e6:.0f} us "
              f"(8-byte Allreduce, {args.algorithms[0]})")
    print("\n".join(allreduce_table(results, names, latencies)))
    print(json.dumps({"results": [[*key, rounds] for key, rounds in results.items()],
                      "latency_s": {str(rate): value for rate, value in latencies.items()},
                      "tcp_bits_per_second": {str(rate): values for rate, values in goodput.items()}}))


def run_steps(args) -> None:
    """`steps`: global training steps on 2 simulated hosts against T_compute + the model's Allreduce time."""
    from benchmarks.distributed import _run_side
    from benchmarks.model import _child_env

    rates = [parse_rate(rate) for rate in args.rates]
    worker = argparse.Namespace(warmup=args.warmup, steps=args.steps)
    loopback, simulated = {}, {}
    with SimulatedNetwork(2, rates[0]) as network:
        for round_index in range(args.rounds):
            for name in args.configs:
                loopback.setdefault(name, []).append(_run_side(name, 2, worker, bucket_cap_mb=args.bucket_cap_mb))
                for rate in rates:
                    network.set_rate(rate)
                    command = [sys.executable, "-m", "benchmarks.distributed", "--worker", name,
                               "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", "1"]
                    if args.bucket_cap_mb is not None:
                        command += ["--bucket-cap-mb", str(args.bucket_cap_mb)]
                    simulated.setdefault((name, rate), []).append(_json_result(network.mpiexec(command), env=_child_env(1)))
                print(f"  round {round_index + 1}, {name}: loopback {statistics.median(loopback[name][-1]['step_s']):.3f} s, "
                      + ", ".join(f"{format_rate(rate)} {statistics.median(simulated[(name, rate)][-1]['step_s']):.3f} s"
                                  for rate in rates), flush=True)
    print(f"\n{'config':>10} {'network':>11} {'T_compute':>10} {'Allreduce alone':>16} {'predicted step':>15} "
          f"{'measured step':>14} {'meas./pred.':>11} {'E measured':>11} {'E predicted':>12}")
    for name in args.configs:
        step = statistics.median(s for record in loopback[name] for s in record["step_s"])
        loop_allreduce = statistics.median(record["allreduce_flat_s"] for record in loopback[name])
        compute = step - loop_allreduce  # the loopback step without its (memory-speed) Allreduce
        print(f"{name:>10} {'loopback':>11} {compute:9.3f}s {loop_allreduce * 1e3:13.1f} ms {'':>15} {step:13.3f}s")
        for rate in rates:
            records = simulated[(name, rate)]
            measured = statistics.median(s for record in records for s in record["step_s"])
            alone = statistics.median(record["allreduce_flat_s"] for record in records)
            predicted = compute + predicted_allreduce_seconds(records[0]["gradient_bytes"], 2, rate, args.latency_us * 1e-6)
            print(f"{name:>10} {format_rate(rate):>11} {compute:9.3f}s {alone * 1e3:13.1f} ms {predicted:14.3f}s {measured:13.3f}s "
                  f"{measured / predicted:11.2f} {100 * scaling_efficiency(compute, measured):10.0f}% "
                  f"{100 * scaling_efficiency(compute, predicted):11.0f}%")


def run_command(args) -> int:
    """`run`: the command as one MPI rank per simulated host; returns its exit status."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("run: expected a command after `--` (e.g. -- minigpt train --preset char), got nothing")
    rate = parse_rate(args.rate)
    with SimulatedNetwork(args.hosts, rate) as network:
        full = network.mpiexec(command)
        print(f"{args.hosts} simulated hosts, links of {format_rate(rate)} each way: {' '.join(full)}", flush=True)
        return subprocess.run(full, check=False).returncode


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _rate(text: str) -> str:
    try:
        parse_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _hosts(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_HOSTS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_HOSTS} hosts, got {text!r}")
    return value


EPILOG = """subcommands (root, `ip`, `tc` and the mpi extra needed):
  allreduce [--hosts 2 3 4] [--rates 1gbit 2.5gbit 10gbit] [--configs char book-124M] [--algorithms auto ring]
            [--repeats 3] [--rounds 2]
            Allreduce of the gradient sizes (and of 8 bytes: L) against 2 (N-1)/N G/B + 2 (N-1) L
  steps     [--rates 1gbit 10gbit] [--configs char book-124M] [--steps 3] [--rounds 2] [--bucket-cap-mb MB]
            global training steps on 2 hosts against T_compute (loopback) + the model's Allreduce
  run       --hosts N --rate RATE -- COMMAND...
            COMMAND as one MPI rank per simulated host (e.g. -- minigpt train --preset char)"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python scripts/bench.py network` (pure: parsing needs no root)."""
    from benchmarks.model import CONFIGS

    parser = argparse.ArgumentParser(prog="python scripts/bench.py network", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="subcommand", metavar="{allreduce,steps,run}")
    commands.required = True
    allreduce = commands.add_parser("allreduce", help="Allreduce times on N simulated hosts against the cost model")
    allreduce.add_argument("--hosts", nargs="+", type=_hosts, default=[2, 3, 4], help="host counts N to measure (default 2 3 4)")
    allreduce.add_argument("--rates", nargs="+", type=_rate, default=["1gbit", "2.5gbit", "10gbit"],
                           help="link rates in tc's notation (default 1gbit 2.5gbit 10gbit)")
    allreduce.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["char", "book-124M"],
                           help="configurations whose gradient sizes are sent (default char book-124M)")
    allreduce.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=["auto", "ring"],
                           help="MPICH Allreduce algorithms (MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM; default auto ring)")
    allreduce.add_argument("--repeats", type=_positive_int, default=3, help="timed Allreduces per size and round (default 3)")
    allreduce.add_argument("--rounds", type=_positive_int, default=2, help="rounds over all rates (default 2)")
    allreduce.add_argument("--tcp-megabytes", type=float, default=500.0, help="MB sent by the TCP test of each rate (default 500)")
    steps = commands.add_parser("steps", help="training steps on 2 simulated hosts against the cost model")
    steps.add_argument("--rates", nargs="+", type=_rate, default=["1gbit", "10gbit"], help="link rates (default 1gbit 10gbit)")
    steps.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["char", "book-124M"],
                       help="configurations (default char book-124M)")
    steps.add_argument("--warmup", type=int, default=1, help="untimed global steps first (default 1)")
    steps.add_argument("--steps", type=_positive_int, default=3, help="timed global steps per round (default 3)")
    steps.add_argument("--rounds", type=_positive_int, default=2, help="rounds alternating loopback and the rates (default 2)")
    steps.add_argument("--latency-us", type=float, default=50.0, help="L of the prediction, microseconds (default 50)")
    steps.add_argument("--bucket-cap-mb", type=float, default=None,
                       help="send the gradients in buckets of at most MB started during backward (minigpt train --bucket-cap-mb)")
    run = commands.add_parser("run", help="run a command as one MPI rank per simulated host")
    run.add_argument("--hosts", type=_hosts, required=True, help="number of simulated hosts (= MPI ranks)")
    run.add_argument("--rate", type=_rate, required=True, help="rate of each link, each way, in tc's notation (e.g. 1gbit)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    # what the subcommands start inside the simulated hosts
    worker = commands.add_parser("allreduce-worker")
    worker.add_argument("--sizes", nargs="+", type=int, required=True)
    worker.add_argument("--repeats", type=_positive_int, default=3)
    server = commands.add_parser("tcp-server")
    server.add_argument("address")
    server.add_argument("port", type=int)
    client = commands.add_parser("tcp-client")
    client.add_argument("address")
    client.add_argument("port", type=int)
    client.add_argument("megabytes", type=float)
    return parser


def main(argv=None) -> None:
    """Command line: `python scripts/bench.py network {allreduce,steps,run} ...` (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand == "allreduce-worker":
        record = allreduce_worker(args.sizes, args.repeats)
        if record is not None:
            print(json.dumps(record), flush=True)
        return
    if args.subcommand == "tcp-server":
        tcp_server(args.address, args.port)
        return
    if args.subcommand == "tcp-client":
        print(json.dumps({"bits_per_second": tcp_client(args.address, args.port, args.megabytes)}), flush=True)
        return
    try:
        check_requirements()
    except SimulationUnavailable as error:
        parser.error(str(error))
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        if args.subcommand == "allreduce":
            run_allreduce(args)
        elif args.subcommand == "steps":
            run_steps(args)
        else:
            status = run_command(args)
            if status:
                raise SystemExit(status)
    except (SimulationUnavailable, ValueError) as error:  # a busy lock, a failing `ip`/`tc`, no command to run
        parser.error(str(error))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()

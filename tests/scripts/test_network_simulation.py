"""The pure parts of `python scripts/bench.py network` (scripts/benchmarks/network.py): rates, the cost model,
the `ip`/`tc` commands and the hydra launcher that would be used, and the errors when the machine
cannot simulate hosts. No test creates a namespace or runs `ip`, `tc` or mpiexec: the autouse
fixture below fails any test that tries.
"""

import os
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import network
from benchmarks.network import (MPI_ENVIRONMENT, SimulationUnavailable, allreduce_table, build_parser,
                                check_requirements,
                                host_address, host_namespace, latency_from_small_messages, launcher_script,
                                mpiexec_command, parse_rate, predicted_allreduce_seconds, rate_commands,
                                setup_commands, tbf_burst_bytes, teardown_commands)


@pytest.fixture(autouse=True)
def no_system_commands(monkeypatch):
    def refuse(command, check=True):
        raise AssertionError(f"a unit test tried to run {command}")

    monkeypatch.setattr(network, "_run", refuse)


@pytest.mark.parametrize("text, bits", [("1gbit", 1e9), ("2.5gbit", 2.5e9), ("100mbit", 1e8), ("10GBit", 1e10),
                                        ("750kbit", 7.5e5), ("1e9bit", 1e9), (" 25 gbit ", 2.5e10)])
def test_parse_rate_reads_tc_units(text, bits):
    assert parse_rate(text) == pytest.approx(bits)


@pytest.mark.parametrize("text", ["1gbps", "1 GB/s", "fast", "", "gbit", "0gbit", "-1gbit", "1.5"])
def test_parse_rate_names_a_bad_value(text):
    with pytest.raises(ValueError, match="rate: expected a positive number") as error:
        parse_rate(text)
    assert repr(text) in str(error.value)


def ring_allreduce_cost(gradient_bytes, hosts, bandwidth_bytes, latency):
    """The ring counted step by step: a reduce-scatter then an all-gather, each N - 1 sends of one chunk per rank."""
    chunk, seconds = gradient_bytes / hosts, 0.0
    for _phase in ("reduce-scatter", "all-gather"):
        for _step in range(hosts - 1):  # every rank sends one chunk to its neighbour at once (full duplex)
            seconds += latency + chunk / bandwidth_bytes
    return seconds


@given(gradient_bytes=st.integers(1, 10**10), hosts=st.integers(1, 256), gigabits=st.floats(0.01, 400),
       latency=st.floats(0, 1e-3))
def test_predicted_allreduce_is_the_ring_counted_step_by_step(gradient_bytes, hosts, gigabits, latency):
    predicted = predicted_allreduce_seconds(gradient_bytes, hosts, gigabits * 1e9, latency)
    assert predicted == pytest.approx(ring_allreduce_cost(gradient_bytes, hosts, gigabits * 1e9 / 8, latency), rel=1e-9)


def test_predicted_allreduce_known_values():
    # 2 hosts: each sends half and receives half twice = G in all; 125 MB at 1 Gbit/s (125 MB/s) is 1 s
    assert predicted_allreduce_seconds(125e6, 2, 1e9, 0.0) == pytest.approx(1.0)
    assert predicted_allreduce_seconds(125e6, 2, 1e9, 50e-6) == pytest.approx(1.0001)
    assert predicted_allreduce_seconds(125e6, 4, 1e9, 0.0) == pytest.approx(1.5)
    assert predicted_allreduce_seconds(125e6, 1, 1e9, 1.0) == 0.0  # one host sends nothing
    with pytest.raises(ValueError, match="hosts: expected at least 1, got 0"):
        predicted_allreduce_seconds(1, 0, 1e9, 0)
    with pytest.raises(ValueError, match="bandwidth_bits: expected a positive rate, got 0"):
        predicted_allreduce_seconds(1, 2, 0, 0)


def test_tbf_burst_holds_two_gso_packets_and_one_millisecond():
    assert tbf_burst_bytes(1e9) == 128 * 1024  # 1 ms at 1 Gbit/s is 125,000 bytes: the 128 KiB floor
    assert tbf_burst_bytes(10e9) == 1_250_000


def test_setup_builds_one_switch_and_a_throttled_full_duplex_link_per_host():
    commands = setup_commands(3, 2.5e9)
    added = [command[3] for command in commands if command[:3] == ["ip", "netns", "add"]]
    assert added == ["mgsim-switch", "mgsim-h0", "mgsim-h1", "mgsim-h2"]
    addresses = [command[-3] for command in commands if "addr" in command]
    assert addresses == ["10.77.0.254/24", "10.77.0.1/24", "10.77.0.2/24", "10.77.0.3/24"]
    assert sum(command[-2:] == ["master", "mgsim-br"] for command in commands) == 3
    limits = [command for command in commands if "tc" in command]
    assert limits == rate_commands(3, 2.5e9) and len(limits) == 6
    throttled = {(command[3], command[8]) for command in limits}  # (namespace, device)
    assert throttled == {(f"mgsim-h{i}", "eth0") for i in range(3)} | {("mgsim-switch", f"mgsim-p{i}") for i in range(3)}
    for command in limits:
        assert command[command.index("rate") + 1] == "2500000000bit"
    created = [command[command.index("add") + 1] for command in commands if command[:3] == ["ip", "link", "add"]]
    created += [command[command.index("name") + 1] for command in commands if "name" in command]
    assert created and all(name.startswith("mgsim-") or name == "eth0" for name in created), created
    assert ["ip", "link", "set", "mgsim-h1-eth", "netns", "mgsim-h1", "name", "eth0"] in commands  # renamed inside its host


@pytest.mark.parametrize("hosts", [0, 17, 2.0, True])
def test_setup_refuses_a_bad_host_count(hosts):
    with pytest.raises(ValueError, match="hosts: expected an integer from 1 to 16"):
        setup_commands(hosts, 1e9)


def test_teardown_deletes_only_our_namespaces_and_links():
    namespaces = "mgsim-h1 (id: 3)\nmgsim-switch (id: 1)\nothers-ns (id: 0)\nmgsimilar\n"
    links = ("1: lo: <LOOPBACK,UP> mtu 65536\n2: eth0: <BROADCAST> mtu 1500\n"
             "9: mgsim-h2-eth@mgsim-p2: <BROADCAST,MULTICAST> mtu 1500\n10: mgsim-p2@mgsim-h2-eth: <BROADCAST> mtu 1500\n")
    assert teardown_commands(namespaces, links) == [
        ["ip", "netns", "delete", "mgsim-h1"], ["ip", "netns", "delete", "mgsim-switch"],
        ["ip", "link", "delete", "mgsim-h2-eth"], ["ip", "link", "delete", "mgsim-p2"]]
    assert teardown_commands("", "") == []


def test_mpiexec_runs_one_rank_per_host_over_tcp():
    command = mpiexec_command(3, ["python", "-m", "x"], "/tmp/launcher.sh", "/venv/bin/mpiexec",
                              {"MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring"})
    assert command[:5] == ["ip", "netns", "exec", "mgsim-switch", "/venv/bin/mpiexec"]
    assert command[-3:] == ["python", "-m", "x"]

    def value(flag):
        return command[command.index(flag) + 1]

    assert value("-hosts") == "10.77.0.1,10.77.0.2,10.77.0.3"
    assert (value("-n"), value("-ppn"), value("-localhost")) == ("3", "1", "10.77.0.254")
    assert (value("-launcher"), value("-launcher-exec")) == ("ssh", "/tmp/launcher.sh")
    variables = {command[i + 1]: command[i + 2] for i, word in enumerate(command) if word == "-genv"}
    assert variables == {**MPI_ENVIRONMENT, "MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring"}
    assert variables["FI_PROVIDER"] == "tcp" and variables["MPIR_CVAR_NOLOCAL"] == "1"
    with pytest.raises(ValueError, match="command: expected the command to run"):
        mpiexec_command(2, [], "/tmp/launcher.sh")


def test_the_launcher_runs_hydras_proxy_in_the_hosts_namespace(tmp_path):
    """Run the generated script with a fake `ip` that prints what it was asked, as hydra calls ssh."""
    fake_ip = tmp_path / "ip"
    fake_ip.write_text('#!/bin/sh\nfor word in "$@"; do printf "[%s]" "$word"; done\n')
    fake_ip.chmod(0o755)
    launcher = tmp_path / "launcher.sh"
    launcher.write_text(launcher_script(3))
    launcher.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    called = subprocess.run([str(launcher), "-x", host_address(2), '"/venv/bin/hydra_pmi_proxy"', "--control-port",
                             "10.77.0.254:4242", "--proxy-id", "2"], capture_output=True, text=True, env=env, check=False)
    assert called.returncode == 0, called.stderr
    assert called.stdout == (f"[netns][exec][{host_namespace(2)}][sh][-c]"
                             '["/venv/bin/hydra_pmi_proxy" --control-port 10.77.0.254:4242 --proxy-id 2]')
    unknown = subprocess.run([str(launcher), "-x", "10.77.0.9", "true"], capture_output=True, text=True, env=env, check=False)
    assert unknown.returncode == 255 and "unknown simulated host '10.77.0.9'" in unknown.stderr


def test_requirements_name_what_is_missing():
    everything = {"ip": "/usr/sbin/ip", "tc": "/usr/sbin/tc"}.get
    with pytest.raises(SimulationUnavailable, match="needs root .* runs as user id 1000"):
        check_requirements(euid=1000, which=everything, mpiexec="/bin/mpiexec")
    with pytest.raises(SimulationUnavailable, match="needs 'tc' from iproute2"):
        check_requirements(euid=0, which={"ip": "/usr/sbin/ip"}.get, mpiexec="/bin/mpiexec")
    with pytest.raises(SimulationUnavailable, match="needs 'ip' and 'tc' from iproute2"):
        check_requirements(euid=0, which=lambda tool: None, mpiexec="/bin/mpiexec")
    with pytest.raises(SimulationUnavailable, match="needs MPICH's mpiexec"):
        check_requirements(euid=0, which=everything, mpiexec=None)
    assert check_requirements(euid=0, which=everything, mpiexec="/bin/mpiexec") == "/bin/mpiexec"


def test_the_command_fails_at_once_without_root(monkeypatch, capsys):
    from benchmarks import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as stop:
        main(["network", "run", "--hosts", "2", "--rate", "1gbit", "--", "true"])
    assert stop.value.code == 2
    assert "the simulated network needs root" in capsys.readouterr().err


def test_run_without_a_command_is_an_error_before_any_namespace(monkeypatch, capsys):
    monkeypatch.setattr(network, "check_requirements", lambda: "/bin/mpiexec")
    with pytest.raises(SystemExit) as stop:
        network.main(["run", "--hosts", "2", "--rate", "1gbit", "--"])
    assert stop.value.code == 2
    assert "run: expected a command after `--`" in capsys.readouterr().err


def test_parser_reads_the_run_command_and_checks_values(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "--hosts", "2", "--rate", "2.5gbit", "--", "minigpt", "train", "--preset", "char"])
    assert (args.hosts, args.rate, args.command) == (2, "2.5gbit", ["--", "minigpt", "train", "--preset", "char"])
    assert parser.parse_args(["steps", "--bucket-cap-mb", "25"]).bucket_cap_mb == 25.0
    assert parser.parse_args(["steps"]).bucket_cap_mb is None
    defaults = parser.parse_args(["allreduce"])
    assert (defaults.hosts, defaults.rates, defaults.algorithms) == ([2, 3, 4], ["1gbit", "2.5gbit", "10gbit"], ["auto", "ring"])
    for bad, message in ((["run", "--hosts", "0", "--rate", "1gbit"], "expected 1 to 16 hosts, got '0'"),
                         (["allreduce", "--rates", "1gbps"], "rate: expected a positive number"),
                         (["steps", "--configs", "huge"], "invalid choice: 'huge'")):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
        assert message in capsys.readouterr().err


def test_latency_comes_from_runs_with_no_more_ranks_than_cores():
    results = {("auto", 1e9, 2, 8): [40e-6, 60e-6], ("auto", 1e9, 4, 8): [3e-3],  # 4 ranks on 2 cores: scheduler time
               ("ring", 1e9, 2, 8): [1.0], ("auto", 1e9, 2, 650e6): [5.2]}
    assert latency_from_small_messages(results, 1e9, max_ranks=2) == pytest.approx(25e-6)
    with pytest.raises(ValueError, match="no 8-byte Allreduce of 'auto' at 10 Gbit/s"):
        latency_from_small_messages(results, 10e9)


def test_a_second_simulation_at_the_same_time_is_refused(monkeypatch, tmp_path):
    import fcntl

    monkeypatch.setattr(network, "check_requirements", lambda: "/bin/mpiexec")
    monkeypatch.setattr(network, "LOCK_FILE", str(tmp_path / "mgsim.lock"))
    with open(tmp_path / "mgsim.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first simulation
        with pytest.raises(SimulationUnavailable, match="another simulated network is in use"):
            with network.SimulatedNetwork(2, 1e9):
                pass


def test_the_table_compares_the_median_round_with_the_model():
    results = {("auto", 1e9, 2, 125_000_000): [1.3, 1.1, 1.2], ("auto", 1e9, 2, 8): [30e-6]}
    header, small, large = allreduce_table(results, {8: "8 B", 125_000_000: "125 MB"}, {1e9: 0.0})
    assert header.split()[:3] == ["algorithm", "rate", "N"]
    assert large.split() == ["auto", "1", "Gbit/s", "2", "125", "MB", "1200.00", "ms", "1000.00", "ms", "1.20", "0.104"]
    assert small.split()[-1] == "nan"  # no bandwidth for the latency probe

"""`Run`: a `minigpt` command started through tests/support/signal_driver.py, whose output lines the
signal tests read as they come (tests/test_signals.py, tests/test_finetune_signals.py)."""

import os
import queue
import subprocess
import sys
import threading
import time

DRIVER = os.path.join(os.path.dirname(__file__), "signal_driver.py")


class Run:
    """A `minigpt train` subprocess (through the driver) whose output lines are read as they come."""

    def __init__(self, arguments, tmp_path, save_linger=0.05, update_linger=0.01, command=("train",)):
        environment = dict(os.environ, PYTHONUNBUFFERED="1", MINIGPT_TEST_SAVE_LINGER=str(save_linger),
                           MINIGPT_TEST_UPDATE_LINGER=str(update_linger), MINIGPT_RESCUE_DIR=str(tmp_path / "rescue"))
        self.process = subprocess.Popen([sys.executable, DRIVER, *command, *arguments], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=environment)
        self.lines, self.output = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            text = line.decode(errors="replace")
            self.output.append(text)
            self.lines.put(text)
        self.lines.put(None)

    def wait_for(self, marker: str, count: int = 1, timeout: float = 30) -> bool:
        """Wait for the count-th line holding `marker`; False if the process ended first."""
        deadline = time.monotonic() + timeout
        while count:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return False
            if line is None:
                return False
            count -= marker in line
        return True

    def send(self, number):
        if self.process.poll() is None:
            self.process.send_signal(number)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        status = self.process.wait(timeout=timeout)
        self.process.stdout.close()
        time.sleep(0.05)  # the reader thread drains the last lines
        return status, "".join(self.output)

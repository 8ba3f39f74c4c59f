"""`minigpt ARGS` with markers, for tests/test_signals.py (not a test itself).

Runs `minigpt.cli.main(ARGS)` after wrapping two places so that the test can send a signal
exactly there: AdamW's parameter update writes "@update" to stderr and then waits
MINIGPT_TEST_UPDATE_LINGER seconds inside the update, and every checkpoint write writes "@save"
and waits MINIGPT_TEST_SAVE_LINGER seconds inside the write (the temporary file half written).
Signals are blocked while this script imports, and unblocked where `minigpt` takes them over, so
that a signal sent early meets the command's own handling rather than this script's imports.
"""

import contextlib
import os
import signal
import sys
import time

SIGNALS = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)

from minigpt import checkpoint, interrupts, optim  # noqa: E402
from minigpt.cli import main  # noqa: E402

UPDATE_LINGER = float(os.environ.get("MINIGPT_TEST_UPDATE_LINGER", "0.01"))
SAVE_LINGER = float(os.environ.get("MINIGPT_TEST_SAVE_LINGER", "0.05"))


def marked(function, marker: bytes, linger: float, before: bool):
    def wrapper(*args, **kwargs):
        if before:
            os.write(2, marker)
            time.sleep(linger)
            return function(*args, **kwargs)
        result = function(*args, **kwargs)  # the file is written, not yet renamed into place
        os.write(2, marker)
        time.sleep(linger)
        return result
    return wrapper


optim.AdamW.step = marked(optim.AdamW.step, b"@update\n", UPDATE_LINGER, before=True)
checkpoint.save_file = marked(checkpoint.save_file, b"@save\n", SAVE_LINGER, before=False)
_take_over = interrupts.interrupt_on_sigterm


@contextlib.contextmanager
def take_over_and_unblock():
    with _take_over():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        yield


interrupts.interrupt_on_sigterm = take_over_and_unblock

if __name__ == "__main__":
    sys.exit(main())  # argv None: its own command line, as the `minigpt` command runs it

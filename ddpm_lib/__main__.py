"""``python -m ddpm_lib train | sample | evaluate`` (see :mod:`ddpm_lib.cli`).

Ctrl-C while the command imports torch and the library is remembered, not raised: an import stopped
half-way leaves broken modules behind (numpy then fails with an AttributeError, a traceback). Once the
imports are done, :func:`ddpm_lib.command_line.start` acts on it (one line, status 130), and reports a bad
``DDPM_*`` variable in one line too.
"""

import signal
import sys

PROG = "python -m ddpm_lib"
deferred: list[int] = []
signal.signal(signal.SIGINT, lambda signum, frame: deferred.append(signum))

from ddpm_lib.command_line import start  # noqa: E402 - after the handler above

if __name__ == "__main__":
    sys.exit(start(PROG, "ddpm_lib.cli", deferred=deferred))

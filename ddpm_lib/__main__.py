"""``python -m ddpm_lib train | sample | evaluate`` (see :mod:`ddpm_lib.cli`).

Only ``sys`` is imported before the ``try``: Ctrl-C while torch loads, or a bad ``DDPM_*`` variable, is one
line (:func:`ddpm_lib.command_line.start`), never a traceback.
"""

import sys

PROG = "python -m ddpm_lib"

try:
    from ddpm_lib.command_line import start
except KeyboardInterrupt:
    sys.stderr.write(f"{PROG}: interrupted (Ctrl-C) while starting; nothing was written.\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(start(PROG, "ddpm_lib.cli"))

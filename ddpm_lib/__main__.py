"""``python -m ddpm_lib train | sample | evaluate`` (see :mod:`ddpm_lib.cli`)."""

import sys

from ddpm_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())

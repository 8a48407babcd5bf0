"""`python -m mpesa_atm` is the `mpesa-atm` command."""

import sys

from mpesa_atm.cli import main

sys.exit(main())

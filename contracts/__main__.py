"""`python -m mpesa_atm.contracts [--out DIR]`: regenerate the pact files (by default, the checkout's)."""

import sys

from mpesa_atm.contracts.generate import main

sys.exit(main())

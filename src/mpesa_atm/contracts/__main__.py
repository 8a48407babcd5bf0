"""`python -m mpesa_atm.contracts [DIR]`: regenerate the pact files (by default, the committed ones)."""

import sys

from mpesa_atm.contracts.generate import main

sys.exit(main())

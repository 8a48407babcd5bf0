"""mpesa-atm-harness: mocks, contracts and fuzzing for the M-Pesa Generic ATM API."""

from mpesa_atm.codes import ResponseCode
from mpesa_atm.settings import BankAccount, Settings, load_settings

__all__ = ["BankAccount", "ResponseCode", "Settings", "__version__", "load_settings"]

__version__ = "0.1.0"

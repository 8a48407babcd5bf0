"""`mpesa-atm proxy`: real traffic between a bank and an iPG, forwarded and judged by the document's rules."""

from mpesa_atm.proxy.findings import Exchange, Finding, Side

__all__ = ["Exchange", "Finding", "Side"]

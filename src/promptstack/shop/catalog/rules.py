"""Product rules that hold wherever a product is created or changed (API, CSV import)."""

from __future__ import annotations

import re

SKU_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 5000
# Ten million in major units: an order of 100 lines of 10,000 each still fits in 64 bits
# many times over, and no catalog sells one item for more.
MAX_PRICE_CENTS = 1_000_000_000
MAX_STOCK = 1_000_000_000
MAX_CREDITS = 10_000_000

# The active ISO 4217 codes, without the precious metals, SDRs and testing codes (X..),
# save for the regional currencies that are money (XAF, XCD, XCG, XOF, XPF).
_ISO_4217 = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL
HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG
XOF XPF YER ZAR ZMW ZWG
"""
CURRENCIES = frozenset(_ISO_4217.split())


def check_sku(sku: str) -> str:
    if not SKU_PATTERN.fullmatch(sku):
        raise ValueError("must be 1 to 64 of the letters A-Z and a-z, digits, '.', '_' or '-'")
    return sku


def sku_key(sku: str) -> str:
    """What uniqueness compares: SKUs differing only in letter case are one SKU."""
    return sku.lower()


def check_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code in upper case, such as EUR or USD")
    return code


def credits_problem(kind: str, credits: int | None) -> str | None:
    """Why `credits` does not suit a product of `kind`, or None."""
    if kind == "credits" and credits is None:
        return "a credits product must say how many credits it grants"
    if kind == "goods" and credits is not None:
        return "only a credits product grants credits"
    return None

"""PII masking: email addresses, phone numbers and IP addresses become fixed placeholders.

- Each mask returns (masked text, replacements). Placeholders contain no digit and no "@", so a
  placeholder already in the text can never match again: masking is idempotent and such a
  placeholder is not counted.
- Phone numbers: North-American forms, 10 digits grouped 3-3-4 with optional "-", ".", or space
  separators, the area code optionally in parentheses, and an optional "+1" / "1" prefix:
  2831823829, (283)-182-3829, (283) 182 3829, 283-182-3829, +1 283 182 3829, +1(283)182-3829.
  The area code must start with 2-9 (as every NANP area code does), which keeps 10-digit Unix
  timestamps (1xxxxxxxxx) unmasked. The whole number, parentheses and prefix included, becomes
  one placeholder.
- IPv4: four dotted octets 0-255 without leading zeros, not inside a longer dotted number
  (so "1.2.3.4.5" is a version, not an address); a sentence's final period is not part of it.
- IPv6 (`mask_ipv6`): colon-hex candidates, kept only when `ipaddress` accepts them, so clock
  times such as 12:30:45 are left alone.
"""

from __future__ import annotations

import ipaddress
import re

EMAIL_PLACEHOLDER = "|||EMAIL_ADDRESS|||"
PHONE_PLACEHOLDER = "|||PHONE_NUMBER|||"
IP_PLACEHOLDER = "|||IP_ADDRESS|||"

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-]+(?:\.[\w%+-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d\.)"  # not inside a word, a longer number or a decimal
    r"(?:\+?1[ .-]?)?"  # country code
    r"(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .-]?"  # area code, maybe in parentheses
    r"\d{3}[ .-]?\d{4}"
    r"(?![\w])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?!\w)")
# Cheap screens that start with a literal or a digit class, so `re` skips ahead in C: the full
# patterns start with a lookbehind and would be tried at every position of every document.
_EMAIL_SCREEN = re.compile(r"@[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2}")
_PHONE_SCREEN = re.compile(r"\d{3}\)?[ .-]{0,2}\d{3}[ .-]?\d{4}")
_IPV4_SCREEN = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IPV6_SCREEN = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)


def mask_emails(text: str) -> tuple[str, int]:
    """Replace email addresses with |||EMAIL_ADDRESS|||."""
    if "@" not in text or not _EMAIL_SCREEN.search(text):
        return text, 0
    return _EMAIL.subn(EMAIL_PLACEHOLDER, text)


def mask_phone_numbers(text: str) -> tuple[str, int]:
    """Replace US phone numbers (see the module docstring for the forms) with |||PHONE_NUMBER|||."""
    if not _PHONE_SCREEN.search(text):
        return text, 0
    return _PHONE.subn(PHONE_PLACEHOLDER, text)


def mask_ips(text: str) -> tuple[str, int]:
    """Replace IPv4 addresses (octets ≤ 255) with |||IP_ADDRESS|||."""
    if not _IPV4_SCREEN.search(text):
        return text, 0
    return _IPV4.subn(IP_PLACEHOLDER, text)


def _is_ipv6_address(candidate: str) -> bool:
    if not any(ch in "0123456789abcdefABCDEF" for ch in candidate):  # "::" alone is no address
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def mask_ipv6(text: str) -> tuple[str, int]:
    """Replace IPv6 addresses (validated by `ipaddress`) with |||IP_ADDRESS|||."""
    if not _IPV6_SCREEN.search(text):  # an IPv6 address has two colons at most 4 hex digits apart
        return text, 0
    replaced = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal replaced
        if not _is_ipv6_address(match.group(0)):
            return match.group(0)
        replaced += 1
        return IP_PLACEHOLDER

    return _IPV6_CANDIDATE.sub(replace, text), replaced


def mask_pii(text: str, *, ipv6: bool = True) -> tuple[str, dict[str, int]]:
    """Apply every mask; returns the masked text and replacements per kind."""
    text, emails = mask_emails(text)
    text, phones = mask_phone_numbers(text)
    text, ips = mask_ips(text)
    counts = {"email": emails, "phone": phones, "ip": ips}
    if ipv6:
        text, ipv6_count = mask_ipv6(text)
        counts["ip"] += ipv6_count
    return text, counts

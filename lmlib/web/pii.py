r"""PII masking: email addresses, phone numbers and IP addresses become fixed placeholders.

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

Notable:
- Every full pattern opens with a lookbehind, so `re` cannot skip ahead to a likely start: it
  would try the pattern at every position of every document, which took most of the masking
  time. Instead a cheap screen that opens with a literal or a set finds the places a match
  needs ("@", a dotted quad, two colons, 3-3-4 digits), and the full pattern is tried only at
  the positions a match through that place could start from (`_substitute`): a few characters
  back for numbers, the start of the local part for an email. Those are the only positions
  where `pattern.subn` can match, so the matches are the same and come in the same order.
- The screens run on the `regex` module, whose set scanning is about three times faster than
  `re`'s; its `\d` knows a newer Unicode than `re`'s, so it matches a superset of digits and
  finds more candidate places, never fewer. The full patterns stay on `re` and decide.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

import regex

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
# Screens: every match of a full pattern contains a match of its screen, at most `_*_BACK`
# characters after its own start (an email's local part has no bound: it is walked back).
_EMAIL_SCREEN = regex.compile(r"@[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2}")  # at the "@"
_EMAIL_LOCAL_PUNCTUATION = "_.%+-"  # with str.isalnum(), the characters of [\w.%+-]
_PHONE_SCREEN = regex.compile(r"\d{3}\)?[ .-]{0,2}\d{3}[ .-]?\d{4}")  # at the area code
_PHONE_BACK = 4  # "+1 (" before the area code
_IPV4_SCREEN = regex.compile(r"(?<=\d)\.\d{1,3}\.\d{1,3}\.\d")  # at the first dot
_IPV4_BACK = 3  # the first octet
_IPV6_SCREEN = regex.compile(r":[0-9A-Fa-f]{0,4}:")  # at the first colon
_IPV6_BACK = 4  # the first group
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)


def _substitute(pattern: re.Pattern[str], text: str, starts: Iterator[int],
                replace: Callable[[re.Match[str]], str]) -> tuple[str, int]:
    """`pattern.sub(replace, text)` and its number of matches, trying the pattern only at
    `starts` (ascending, repeats allowed). Exact when every match starts at one of them: `sub`
    takes the leftmost match at or after the end of the previous one, and so does this; the
    lookbehinds see the real text before a start, as they do in `sub`."""
    pieces: list[str] = []
    end = matches = 0
    for start in starts:
        if start < end:
            continue
        match = pattern.match(text, start)
        if match is not None:
            pieces += (text[end:start], replace(match))
            end = match.end()  # no pattern here matches the empty string
            matches += 1
    if not matches:
        return text, 0
    pieces.append(text[end:])
    return "".join(pieces), matches


def _starts_before(screen: regex.Pattern, text: str, back: int) -> Iterator[int]:
    """Every position at most `back` characters before a place where `screen` matches."""
    next_start = 0
    for hit in screen.finditer(text, overlapped=True):
        yield from range(max(next_start, hit.start() - back), hit.start() + 1)
        next_start = hit.start() + 1


def _email_starts(text: str) -> Iterator[int]:
    """For each "@" of a screen match, the start of the run of local-part characters before it:
    the lookbehind (?<![\\w.%+-]) allows no other start for an address with this "@"."""
    for hit in _EMAIL_SCREEN.finditer(text, overlapped=True):
        start = hit.start()
        while start and (text[start - 1].isalnum() or text[start - 1] in _EMAIL_LOCAL_PUNCTUATION):
            start -= 1
        yield start


def _placeholder(placeholder: str) -> Callable[[re.Match[str]], str]:
    return lambda match: placeholder


def mask_emails(text: str) -> tuple[str, int]:
    """Replace email addresses with |||EMAIL_ADDRESS|||."""
    if "@" not in text:
        return text, 0
    return _substitute(_EMAIL, text, _email_starts(text), _placeholder(EMAIL_PLACEHOLDER))


def mask_phone_numbers(text: str) -> tuple[str, int]:
    """Replace US phone numbers (see the module docstring for the forms) with |||PHONE_NUMBER|||."""
    return _substitute(_PHONE, text, _starts_before(_PHONE_SCREEN, text, _PHONE_BACK),
                       _placeholder(PHONE_PLACEHOLDER))


def mask_ips(text: str) -> tuple[str, int]:
    """Replace IPv4 addresses (octets ≤ 255) with |||IP_ADDRESS|||."""
    return _substitute(_IPV4, text, _starts_before(_IPV4_SCREEN, text, _IPV4_BACK),
                       _placeholder(IP_PLACEHOLDER))


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
    if ":" not in text:
        return text, 0
    replaced = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal replaced
        if not _is_ipv6_address(match.group(0)):
            return match.group(0)
        replaced += 1
        return IP_PLACEHOLDER

    masked, _ = _substitute(_IPV6_CANDIDATE, text, _starts_before(_IPV6_SCREEN, text, _IPV6_BACK),
                            replace)
    return masked, replaced


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

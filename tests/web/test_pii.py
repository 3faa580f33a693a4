"""PII masking: exact placeholders and replacement counts for every form; the screened masks
equal their full patterns tried at every position."""

import re

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.web.pii import (
    _EMAIL,
    _IPV4,
    _IPV6_CANDIDATE,
    _PHONE,
    EMAIL_PLACEHOLDER,
    IP_PLACEHOLDER,
    PHONE_PLACEHOLDER,
    _is_ipv6_address,
    mask_emails,
    mask_ips,
    mask_ipv6,
    mask_phone_numbers,
    mask_pii,
)


def test_placeholders_are_the_reference_strings():
    assert EMAIL_PLACEHOLDER == "|||EMAIL_ADDRESS|||"
    assert PHONE_PLACEHOLDER == "|||PHONE_NUMBER|||"
    assert IP_PLACEHOLDER == "|||IP_ADDRESS|||"


@pytest.mark.parametrize(
    "address", ["test@gmail.com", "first.last+tag@mail.example.co.uk", "a_b-c@sub-domain.org"]
)
def test_email_is_masked_and_surrounding_text_kept(address):
    text = f"Feel free to contact me at {address} if you have any questions."
    assert mask_emails(text) == (
        "Feel free to contact me at |||EMAIL_ADDRESS||| if you have any questions.", 1
    )


def test_several_emails_are_counted_and_final_period_kept():
    assert mask_emails("Write to a@b.com or c.d@e.org.") == (
        "Write to |||EMAIL_ADDRESS||| or |||EMAIL_ADDRESS|||.", 2
    )


def test_text_without_email_is_unchanged():
    text = "An at sign @ alone, user@localhost and 5 @ 6 are no addresses."
    assert mask_emails(text) == (text, 0)


@pytest.mark.parametrize(
    "number",
    [
        "2831823829",
        "(283)-182-3829",
        "(283) 182 3829",
        "283-182-3829",
        "283.182.3829",
        "+1 2831823829",
        "+12831823829",
        "+1 (283) 182 3829",
        "+1 (283)-182-3829",
        "+1-283-182-3829",
        "+1 283 182 3829",
    ],
)
def test_phone_number_forms_are_replaced_once_as_a_whole(number):
    text = f"Feel free to contact me at {number} if you have any questions."
    assert mask_phone_numbers(text) == (
        "Feel free to contact me at |||PHONE_NUMBER||| if you have any questions.", 1
    )


@pytest.mark.parametrize(
    "text",
    [
        "The epoch 1700000000 is a timestamp.",  # area codes never start with 1
        "A longer number 283182382912 is not a phone.",
        "Pi is 3.2831823829 or so.",
        "Order 123-45-6789 arrived.",
    ],
)
def test_non_phone_numbers_are_left_alone(text):
    assert mask_phone_numbers(text) == (text, 0)


def test_two_phone_numbers_count_two():
    assert mask_phone_numbers("Call 283-182-3829 or (415) 555 0100.") == (
        "Call |||PHONE_NUMBER||| or |||PHONE_NUMBER|||.", 2
    )


@pytest.mark.parametrize("address", ["192.168.1.1", "0.0.0.0", "255.255.255.255", "8.8.4.4"])
def test_ipv4_is_masked_and_final_period_is_not_part_of_it(address):
    assert mask_ips(f"The server is at {address}.") == ("The server is at |||IP_ADDRESS|||.", 1)


@pytest.mark.parametrize(
    "text", ["Octet 256.1.1.1 is invalid.", "Version 1.2.3.4.5 is out.", "Padded 01.2.3.4 no."]
)
def test_invalid_or_embedded_ipv4_is_left_alone(text):
    assert mask_ips(text) == (text, 0)


def test_ipv6_is_masked_but_clock_times_are_not():
    text = "Hosts 2001:db8::ff00:42:8329 and ::1 answered at 12:30:45."
    assert mask_ipv6(text) == ("Hosts |||IP_ADDRESS||| and |||IP_ADDRESS||| answered at 12:30:45.", 2)


def test_already_masked_text_is_neither_changed_nor_counted():
    text = f"Mail {EMAIL_PLACEHOLDER}, call {PHONE_PLACEHOLDER}, ping {IP_PLACEHOLDER}."
    assert mask_emails(text) == (text, 0)
    assert mask_phone_numbers(text) == (text, 0)
    assert mask_ips(text) == (text, 0)
    assert mask_ipv6(text) == (text, 0)
    assert mask_pii(text) == (text, {"email": 0, "phone": 0, "ip": 0})


def test_mask_pii_counts_each_kind_and_is_idempotent():
    text = "Reach jo@x.org or 283-182-3829; hosts 10.0.0.1 and fe80::1 are internal."
    masked, counts = mask_pii(text)
    assert masked == (
        "Reach |||EMAIL_ADDRESS||| or |||PHONE_NUMBER|||; hosts |||IP_ADDRESS||| and "
        "|||IP_ADDRESS||| are internal."
    )
    assert counts == {"email": 1, "phone": 1, "ip": 2}
    assert mask_pii(masked) == (masked, {"email": 0, "phone": 0, "ip": 0})
    assert mask_pii(text, ipv6=False)[1] == {"email": 1, "phone": 1, "ip": 1}


# --- the masks try each full pattern only where a screen says a match could start ----------


def plain_ipv6(text):
    """mask_ipv6 by its definition: the candidate pattern at every position, then validation."""
    replaced = 0

    def replace(match):
        nonlocal replaced
        if _is_ipv6_address(match.group(0)):
            replaced += 1
            return IP_PLACEHOLDER
        return match.group(0)

    return _IPV6_CANDIDATE.sub(replace, text), replaced


PLAIN_MASKS = [
    (mask_emails, lambda text: _EMAIL.subn(EMAIL_PLACEHOLDER, text)),
    (mask_phone_numbers, lambda text: _PHONE.subn(PHONE_PLACEHOLDER, text)),
    (mask_ips, lambda text: _IPV4.subn(IP_PLACEHOLDER, text)),
    (mask_ipv6, plain_ipv6),
]


def test_masks_equal_their_patterns_tried_at_every_position_on_real_pages(real_texts):
    found = [0] * len(PLAIN_MASKS)
    for text in real_texts:
        for index, (mask, plain) in enumerate(PLAIN_MASKS):
            result = mask(text)
            assert result == plain(text), (mask.__name__, text[:200])
            found[index] += result[1]
    assert all(found), found  # the pages hold every kind, so every path ran


# Pieces of addresses and numbers, and characters that join or break them up; Arabic-Indic and
# superscript digits, since the screens (regex) and the patterns (re) have their own `\d`.
PII_PIECES = ["283", "182", "3829", "2831823829", "415", "1", "+1", "+", "(", ")", " ", "-", ".",
              "..", "192", "168", "10", "0", "255", "256", "01", "4", "10.0.0.1", "1.2.3", ".4",
              "@", "a", "jo", "b.com", "x.org", "jo@x.org", "a.b@c-d.co.uk", "-y", "_", "%", ":",
              "::", "fe80", "db8", "2001", "ff", "12:30", "\n", "٣٤٥", "²", "é"]
PII_TEXTS = st.lists(st.one_of(st.sampled_from(PII_PIECES), st.text("0123456789.:@ -(a", max_size=3)),
                     max_size=30).map("".join)


@settings(max_examples=3000, deadline=None)
@given(PII_TEXTS)
def test_masks_equal_their_patterns_tried_at_every_position(text):
    for mask, plain in PLAIN_MASKS:
        assert mask(text) == plain(text), mask.__name__


def test_screen_digits_include_every_digit_of_the_patterns():
    """The screens (regex) may only find more places than the patterns (re) could match."""
    digits = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert set(re.findall(r"\d", digits)) <= set(regex.findall(r"\d", digits))

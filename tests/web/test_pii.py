"""PII masking: exact placeholders and replacement counts for every form."""

import pytest

from lmlib.web.pii import (
    EMAIL_PLACEHOLDER,
    IP_PLACEHOLDER,
    PHONE_PLACEHOLDER,
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

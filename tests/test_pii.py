"""Patient identifiers: detection, the NHS number checksum, redaction, and no false alarms on clinical numbers."""

from __future__ import annotations

import pytest

from core.safety.pii import find_identifiers, nhs_number_valid, redact


def _kinds(text: str) -> list[str]:
    return [i.kind for i in find_identifiers(text)]


def test_nhs_number_checksum() -> None:
    assert nhs_number_valid("943 476 5919")
    assert not nhs_number_valid("943 476 5918")
    assert not nhs_number_valid("1111111111")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("NHS number 943 476 5919, chest infection", "NHS_NUMBER"),
        ("MRN 1234567 on the ward", "MRN"),
        ("Call her on 07700 900123", "PHONE"),
        ("email j.smith@example.com", "EMAIL"),
        ("lives at 12 Acacia Avenue", "ADDRESS"),
        ("postcode SW1A 1AA", "POSTCODE"),
        ("Mrs Patel has a cough", "NAME"),
        ("John Smith, DOB 01/02/1950", "DOB"),
    ],
)
def test_identifiers_are_found(text: str, kind: str) -> None:
    assert kind in _kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "BP 186/124 and eGFR 40 - what next?",
        "What dose of adrenaline 0.5 mg in anaphylaxis?",
        "HbA1c 48 mmol/mol on 2 occasions",
        "NHS number 943 476 5918",
        "Pt in clinic with papilloedema",
    ],
)
def test_clinical_text_has_no_identifiers(text: str) -> None:
    assert _kinds(text) == []


def test_redact_replaces_each_identifier() -> None:
    text = "Mr John Smith, DOB 01/02/1950, NHS 943 476 5919, tel 07700 900123"
    assert redact(text) == "[NAME], [DOB], NHS [NHS_NUMBER], tel [PHONE]"

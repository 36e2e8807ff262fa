"""Unit tests of services.parties.mapping: mapping both ways, validation, three-way merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.parties import mapping as M
from services.parties.mapping import BankField, PartyField, Side

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

ESPO_PERSON = {
    "id": "abc",
    "name": "Max Mustermann",
    "firstName": " Max ",
    "lastName": "Mustermann",
    "rechtsform": "natürliche Person",
    "geburtsdatum": "1980-05-17",
    "emailAddress": "max@example.com",
    "phoneNumber": "+49 30 123",
    "addressStreet": "Hauptstr. 1",
    "addressCity": "Berlin",
    "addressPostalCode": "10115",
    "addressCountry": "Deutschland",
    "advowareId": 7,
    "modifiedAt": "2026-03-01 12:00:00",
}

ADVO_PERSON = {
    "BetNr": 7,
    "Name": "Mustermann",
    "Vorname": "Max",
    "Rechtsform": "natürliche Person",
    "Geburtsdatum": "1980-05-17T00:00:00",
    "Email": "max@example.com",
    "Telefon": "+49 30 123",
    "Strasse": "Hauptstr. 1",
    "Ort": "Berlin",
    "PLZ": "10115",
    "Land": "DE",
    "ExterneId": "abc",
    "GeaendertAm": "2026-03-01T12:00:00.250Z",
}


def test_both_sides_map_to_the_same_canonical_record() -> None:
    espo = M.espo_party_to_canonical(ESPO_PERSON)
    advo = M.advoware_party_to_canonical(ADVO_PERSON)
    assert espo == advo
    assert espo["firstName"] == "Max"
    assert espo["geburtsdatum"] == "1980-05-17"
    assert espo["addressCountry"] == "DE"
    assert set(espo) == {f.value for f in PartyField}


def test_advoware_mapping_accepts_camel_case_keys() -> None:
    camel = {k[0].lower() + k[1:]: v for k, v in ADVO_PERSON.items()}
    assert M.advoware_party_to_canonical(camel) == M.advoware_party_to_canonical(ADVO_PERSON)


def test_company_uses_name_when_last_name_is_empty() -> None:
    c = M.espo_party_to_canonical({"id": "x", "name": "Muster GmbH", "lastName": "", "rechtsform": "GmbH"})
    assert c["lastName"] == "Muster GmbH"
    assert c["firstName"] is None
    assert M.canonical_party_to_advoware(c)["Name"] == "Muster GmbH"


def test_canonical_to_espo_derives_display_name() -> None:
    out = M.canonical_party_to_espo({"firstName": "Erika", "lastName": "Musterfrau"})
    assert out == {"firstName": "Erika", "lastName": "Musterfrau", "name": "Erika Musterfrau"}
    assert M.canonical_party_to_espo({"emailAddress": "a@b.de"}) == {"emailAddress": "a@b.de"}


def test_canonical_to_advoware_uses_advoware_names() -> None:
    out = M.canonical_party_to_advoware(M.espo_party_to_canonical(ESPO_PERSON))
    assert out["Name"] == "Mustermann"
    assert out["Vorname"] == "Max"
    assert out["Telefon"] == "+49 30 123"
    assert out["PLZ"] == "10115"
    assert out["Land"] == "DE"
    assert "BetNr" not in out and "GeaendertAm" not in out


def test_round_trip_is_stable() -> None:
    c = M.espo_party_to_canonical(ESPO_PERSON)
    assert M.advoware_party_to_canonical(M.canonical_party_to_advoware(c)) == c
    assert M.espo_party_to_canonical(M.canonical_party_to_espo(c)) == c


def test_blank_values_become_none() -> None:
    c = M.espo_party_to_canonical({"id": "x", "lastName": "A", "emailAddress": "   ", "phoneNumber": ""})
    assert c["emailAddress"] is None and c["phoneNumber"] is None


def test_bank_mapping_both_ways() -> None:
    espo = {"iban": "de89 3704 0044 0532 0130 00", "bic": "cobadeffxxx", "bankName": "Commerzbank", "kontoinhaber": "Max"}
    advo = {"Id": 3, "IBAN": "DE89370400440532013000", "BIC": "COBADEFFXXX", "Bank": "Commerzbank", "Kontoinhaber": "Max"}
    assert M.espo_bank_to_canonical(espo) == M.advoware_bank_to_canonical(advo)
    assert M.canonical_bank_to_advoware(M.espo_bank_to_canonical(espo)) == {
        "IBAN": "DE89370400440532013000",
        "BIC": "COBADEFFXXX",
        "Bank": "Commerzbank",
        "Kontoinhaber": "Max",
    }
    assert set(M.canonical_bank_to_espo(M.espo_bank_to_canonical(espo))) == {f.value for f in BankField}


@pytest.mark.parametrize(
    "iban,ok",
    [
        ("DE89370400440532013000", True),
        ("de89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("DE89370400440532013001", False),  # checksum
        ("DE8937040044", False),  # too short
        ("XX", False),
        ("", False),
        (None, False),
    ],
)
def test_iban_checksum(iban: str | None, ok: bool) -> None:
    assert M.iban_is_valid(iban) is ok


def test_validate_party() -> None:
    good = M.espo_party_to_canonical(ESPO_PERSON)
    assert M.validate_party(good) == []
    assert any("lastName" in e for e in M.validate_party({**good, "lastName": None}))
    assert any("E-Mail" in e for e in M.validate_party({**good, "emailAddress": "kaputt"}))
    assert any("Geburtsdatum" in e for e in M.validate_party({**good, "geburtsdatum": "17.05.1980"}))


@pytest.mark.parametrize(
    "iban,bic,ok",
    [
        ("DE89370400440532013000", "COBADEFFXXX", True),
        # each of these passes the bare mod-97 check:
        ("DE543704004405320130001", None, False),  # DE IBANs have exactly 22 characters
        ("GB04WEST123456987654", None, False),  # GB: 22 characters
        ("XY43370400440532013000", None, False),  # no such country
        (None, "COBAXXFF", False),  # BIC with an unknown country
        (None, "1OBADEFF", False),  # SWIFT: letters-only bank code
        (None, "cobade ff", True),
    ],
)
def test_iban_bic_country_rules(iban: str | None, bic: str | None, ok: bool) -> None:
    """IBAN/BIC come from schwifty: country-specific length and format, not just mod-97."""
    if iban is not None and not ok:
        digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
        assert int(digits) % 97 == 1, "the case must pass the bare mod-97 check"
    if iban is not None:
        assert M.iban_is_valid(iban) is ok
    if bic is not None:
        assert M.bic_is_valid(bic) is ok


def test_validate_bank() -> None:
    good = M.normalize_bank({"iban": "DE89370400440532013000", "bic": "COBADEFFXXX"})
    assert M.validate_bank(good) == []
    assert any("IBAN" in e for e in M.validate_bank({**good, "iban": "DE00370400440532013000"}))
    assert any("iban" in e for e in M.validate_bank({**good, "iban": None}))
    assert any("BIC" in e for e in M.validate_bank({**good, "bic": "XX"}))


# --------------------------------------------------------------------------- merge

BASE = {"a": 1, "b": 2, "c": 3}


def test_merge_nothing_changed() -> None:
    r = M.three_way_merge(BASE, dict(BASE), dict(BASE))
    assert r.in_sync and r.merged == BASE and not r.conflicts


def test_merge_change_on_espocrm_side_goes_to_advoware() -> None:
    r = M.three_way_merge(BASE, {**BASE, "a": 10}, dict(BASE))
    assert r.to_advoware == {"a": 10} and r.to_espocrm == {} and not r.conflicts
    assert r.merged["a"] == 10


def test_merge_change_on_advoware_side_goes_to_espocrm() -> None:
    r = M.three_way_merge(BASE, dict(BASE), {**BASE, "b": 20})
    assert r.to_espocrm == {"b": 20} and r.to_advoware == {}


def test_merge_different_fields_on_each_side_both_survive() -> None:
    r = M.three_way_merge(BASE, {**BASE, "a": 10}, {**BASE, "b": 20})
    assert r.merged == {"a": 10, "b": 20, "c": 3}
    assert r.to_advoware == {"a": 10} and r.to_espocrm == {"b": 20} and not r.conflicts


def test_merge_same_change_on_both_sides_is_no_conflict() -> None:
    r = M.three_way_merge(BASE, {**BASE, "a": 10}, {**BASE, "a": 10})
    assert r.in_sync and not r.conflicts and r.merged["a"] == 10


def test_conflict_newer_espocrm_wins() -> None:
    r = M.three_way_merge(
        BASE, {**BASE, "a": "espo"}, {**BASE, "a": "advo"}, espo_modified=T0 + timedelta(seconds=5), advo_modified=T0
    )
    assert r.merged["a"] == "espo" and r.to_advoware == {"a": "espo"} and r.to_espocrm == {}
    assert [c.field for c in r.conflicts] == ["a"] and r.conflicts[0].winner is Side.ESPOCRM
    note = r.conflict_note()
    assert note is not None and "a" in note and "espocrm" in note


def test_conflict_newer_advoware_wins() -> None:
    r = M.three_way_merge(
        BASE, {**BASE, "a": "espo"}, {**BASE, "a": "advo"}, espo_modified=T0, advo_modified=T0 + timedelta(seconds=1)
    )
    assert r.merged["a"] == "advo" and r.to_espocrm == {"a": "advo"} and r.conflicts[0].winner is Side.ADVOWARE


def test_conflict_tie_within_a_second_goes_to_advoware() -> None:
    r = M.three_way_merge(
        BASE,
        {**BASE, "a": "espo"},
        {**BASE, "a": "advo"},
        espo_modified=T0,
        advo_modified=T0 + timedelta(milliseconds=300),
    )
    assert r.merged["a"] == "advo"
    assert M.conflict_winner(None, T0) is Side.ADVOWARE
    assert M.conflict_winner(T0, None) is Side.ADVOWARE


def test_conflict_only_on_the_conflicting_field() -> None:
    r = M.three_way_merge(
        BASE,
        {**BASE, "a": "espo", "b": 22},
        {**BASE, "a": "advo", "c": 33},
        espo_modified=T0 + timedelta(seconds=3),
        advo_modified=T0,
    )
    assert r.merged == {"a": "espo", "b": 22, "c": 33}
    assert [c.field for c in r.conflicts] == ["a"]
    assert r.to_advoware == {"a": "espo", "b": 22} and r.to_espocrm == {"c": 33}


def test_merge_without_base_treats_differences_as_conflicts() -> None:
    r = M.three_way_merge(None, {"a": 1, "b": 2}, {"a": 1, "b": 3}, espo_modified=T0 + timedelta(seconds=2), advo_modified=T0)
    assert r.merged == {"a": 1, "b": 2} and [c.field for c in r.conflicts] == ["b"]
    assert r.conflicts[0].base is None


def test_merge_with_explicit_field_list_ignores_other_keys() -> None:
    r = M.three_way_merge({"a": 1}, {"a": 2, "x": 1}, {"a": 1, "x": 2}, fields=["a"])
    assert r.merged == {"a": 2} and r.to_advoware == {"a": 2}


def test_modification_times() -> None:
    assert M.espo_modified_at({"modifiedAt": "2026-03-01 12:00:00"}) == T0
    assert M.advoware_modified_at({"GeaendertAm": "2026-03-01T12:00:00.250Z"}) == T0 + timedelta(milliseconds=250)
    assert M.advoware_modified_at({"geaendertAm": "2026-03-01T12:00:00"}) == T0
    assert M.espo_modified_at({}) is None and M.advoware_modified_at({"GeaendertAm": "kaputt"}) is None

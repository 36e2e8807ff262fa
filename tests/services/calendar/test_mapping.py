"""Advoware appointment ↔ Google event mapping (services.calendar.advoware_mapping, services.calendar.google_mapping)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.calendar.advoware_mapping import (
    CalendarItem,
    Freq,
    Recurrence,
    add_months,
    advoware_fields,
    belongs_to,
    item_from_advoware,
)
from services.calendar.google_mapping import (
    FRNR_PROPERTY,
    event_frnr,
    google_body,
    is_syncable_event,
    item_from_google,
    parse_recurrence,
    to_rrule,
)


def termin(**kw):
    base = {
        "FrNr": 1,
        "Text": "Besprechung",
        "Notiz": "Akte mitbringen",
        "Ort": "Raum 1",
        "Datum": "2026-06-10T09:00:00Z",
        "DatumBis": "2026-06-10T00:00:00Z",
        "UhrzeitBis": "10:30:00",
        "Abwesenheit": 0,
        "Privat": 0,
        "Dauertermin": 0,
        "Turnus": 0,
        "TurnusArt": 0,
        "Anwalt": "MM",
        "Sb": "",
        "ZuletztGeaendertAm": "2026-06-01T08:00:00.000Z",
    }
    base.update(kw)
    return base


# --- timed appointments and time zones ----------------------------------------------------


def test_timed_appointment_maps_fields_and_berlin_wall_clock():
    item = item_from_advoware(termin())
    body = google_body(item, 1)
    assert body["summary"] == "Besprechung"
    assert body["description"] == "Akte mitbringen"
    assert body["location"] == "Raum 1"
    # Summer: CEST, +02:00; the Z of Datum is ignored (wall clock).
    assert body["start"] == {"dateTime": "2026-06-10T09:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert body["end"] == {"dateTime": "2026-06-10T10:30:00+02:00", "timeZone": "Europe/Berlin"}
    assert body["visibility"] == "default"
    assert body["recurrence"] == []
    assert body["extendedProperties"] == {"private": {FRNR_PROPERTY: "1"}}
    # and back
    assert item_from_google(body) == item
    fields = advoware_fields(item_from_google(body))
    assert fields["Datum"] == "2026-06-10T09:00:00Z"
    assert fields["DatumBis"] == "2026-06-10T00:00:00Z"
    assert fields["UhrzeitBis"] == "10:30:00"
    assert fields["Abwesenheit"] == 0 and fields["Dauertermin"] == 0


def test_winter_time_offset():
    body = google_body(item_from_advoware(termin(Datum="2026-01-15T09:00:00Z", DatumBis="2026-01-15T00:00:00Z")))
    assert body["start"]["dateTime"] == "2026-01-15T09:00:00+01:00"


@pytest.mark.parametrize(
    ("day", "offset"),
    [
        ("2026-03-28", "+01:00"),  # Saturday before the change: CET
        ("2026-03-29", "+02:00"),  # the Sunday of the change, 10:00 is already CEST
        ("2026-10-24", "+02:00"),  # Saturday before the change back: CEST
        ("2026-10-25", "+01:00"),  # the Sunday of the change back, 10:00 is CET again
    ],
)
def test_dst_change_dates(day, offset):
    item = item_from_advoware(termin(Datum=f"{day}T10:00:00Z", DatumBis=f"{day}T00:00:00Z", UhrzeitBis="11:00:00"))
    body = google_body(item)
    assert body["start"]["dateTime"] == f"{day}T10:00:00{offset}"
    assert body["end"]["dateTime"] == f"{day}T11:00:00{offset}"
    assert item_from_google(body) == item


def test_dst_google_times_in_utc_or_other_zones_become_berlin_wall_clock():
    # 2026-03-29 08:00Z = 10:00 CEST; the day before 08:00Z = 09:00 CET
    ev = {"start": {"dateTime": "2026-03-29T08:00:00Z"}, "end": {"dateTime": "2026-03-29T09:00:00Z"}}
    item = item_from_google(ev)
    assert item.start == datetime(2026, 3, 29, 10, 0) and item.end == datetime(2026, 3, 29, 11, 0)
    ev = {"start": {"dateTime": "2026-03-28T08:00:00Z"}, "end": {"dateTime": "2026-03-28T09:00:00Z"}}
    assert item_from_google(ev).start == datetime(2026, 3, 28, 9, 0)
    # October: 00:30Z and 01:30Z are both 02:30 local wall clock (repeated hour)... 00:30Z → 02:30 CEST
    ev = {"start": {"dateTime": "2026-10-25T00:30:00Z"}, "end": {"dateTime": "2026-10-25T02:00:00Z"}}
    item = item_from_google(ev)
    assert item.start == datetime(2026, 10, 25, 2, 30) and item.end == datetime(2026, 10, 25, 3, 0)
    # naive dateTime with a foreign timeZone
    ev = {
        "start": {"dateTime": "2026-10-26T09:00:00", "timeZone": "America/New_York"},
        "end": {"dateTime": "2026-10-26T10:00:00", "timeZone": "America/New_York"},
    }
    assert item_from_google(ev).start == datetime(2026, 10, 26, 14, 0)  # NY still EDT (-4), Berlin CET (+1)
    fields = advoware_fields(item_from_google(ev))
    assert fields["Datum"] == "2026-10-26T14:00:00Z" and fields["UhrzeitBis"] == "15:00:00"


def test_dst_nonexistent_wall_clock_time_is_stable():
    # 02:30 does not exist on 2026-03-29 in Berlin: Google is given the CET offset (= 03:30 CEST).
    item = item_from_advoware(termin(Datum="2026-03-29T02:30:00Z", DatumBis="2026-03-29T00:00:00Z", UhrzeitBis="04:00:00"))
    body = google_body(item)
    assert body["start"]["dateTime"] == "2026-03-29T02:30:00+01:00"
    back = item_from_google(body)
    assert back.start == datetime(2026, 3, 29, 3, 30)
    # converting again gives the same event: no ping-pong
    assert google_body(back)["start"] == google_body(item_from_google(google_body(back)))["start"]


def test_multi_day_timed_appointment():
    item = item_from_advoware(termin(Datum="2026-06-10T14:00:00Z", DatumBis="2026-06-12T00:00:00Z", UhrzeitBis="12:00:00"))
    assert item.end == datetime(2026, 6, 12, 12, 0)
    fields = advoware_fields(item)
    assert fields["DatumBis"] == "2026-06-12T00:00:00Z" and fields["UhrzeitBis"] == "12:00:00"


def test_end_before_start_is_clamped():
    item = item_from_advoware(termin(UhrzeitBis="08:00:00"))
    assert item.end == item.start


# --- all-day ------------------------------------------------------------------------------


def test_all_day_absence_minus_one_minute_quirk():
    rec = termin(Abwesenheit=1, Datum="2026-07-06T00:00:00Z", DatumBis="2026-07-10T00:00:00Z", UhrzeitBis="23:59:00")
    item = item_from_advoware(rec)
    assert item.all_day and item.start == date(2026, 7, 6) and item.end == date(2026, 7, 11)
    body = google_body(item)
    assert body["start"] == {"date": "2026-07-06"} and body["end"] == {"date": "2026-07-11"}
    fields = advoware_fields(item_from_google(body))
    assert fields["Abwesenheit"] == 1
    assert fields["Datum"] == "2026-07-06T00:00:00Z"
    assert fields["DatumBis"] == "2026-07-10T00:00:00Z"
    assert fields["UhrzeitBis"] == "23:59:00"


def test_single_all_day_and_midnight_end_variant():
    one = item_from_advoware(termin(Abwesenheit=1, Datum="2026-07-06T00:00:00Z", DatumBis="2026-07-06T00:00:00Z", UhrzeitBis="23:59:00"))
    assert (one.start, one.end) == (date(2026, 7, 6), date(2026, 7, 7))
    # end written as 00:00 of the following day means "until midnight"
    midnight = item_from_advoware(termin(Abwesenheit=1, Datum="2026-07-06T00:00:00Z", DatumBis="2026-07-07T00:00:00Z", UhrzeitBis="00:00:00"))
    assert midnight == one


def test_google_all_day_event_over_dst_change():
    ev = {"summary": "Urlaub", "start": {"date": "2026-10-24"}, "end": {"date": "2026-10-27"}}
    fields = advoware_fields(item_from_google(ev), kuerzel="AB")
    assert fields["Datum"] == "2026-10-24T00:00:00Z"
    assert fields["DatumBis"] == "2026-10-26T00:00:00Z"
    assert fields["UhrzeitBis"] == "23:59:00"
    assert fields["Abwesenheit"] == 1
    assert fields["Anwalt"] == "AB"


# --- private ------------------------------------------------------------------------------


def test_private_flag_and_visibility():
    item = item_from_advoware(termin(Privat=1))
    assert item.private
    assert google_body(item)["visibility"] == "private"
    ev = google_body(item)
    assert advoware_fields(item_from_google(ev))["Privat"] == 1
    for vis, expected in (("private", 1), ("confidential", 1), ("public", 0), ("default", 0), (None, 0)):
        e = dict(ev, visibility=vis)
        assert advoware_fields(item_from_google(e))["Privat"] == expected


# --- recurring ----------------------------------------------------------------------------


@pytest.mark.parametrize(("art", "freq"), [(1, "DAILY"), (2, "WEEKLY"), (3, "MONTHLY"), (4, "YEARLY")])
def test_recurring_turnus_to_rrule(art, freq):
    rec = termin(Dauertermin=1, Turnus=2, TurnusArt=art, Datum="2026-06-10T08:30:00Z", DatumBis="2026-12-31T00:00:00Z", UhrzeitBis="09:00:00")
    item = item_from_advoware(rec)
    assert item.recurrence == Recurrence(Freq(freq), 2, date(2026, 12, 31))
    assert item.end == datetime(2026, 6, 10, 9, 0)  # end of the first occurrence, not of the series
    body = google_body(item)
    # end of 2026-12-31 in Berlin (CET) = 22:59:59Z
    assert body["recurrence"] == [f"RRULE:FREQ={freq};INTERVAL=2;UNTIL=20261231T225959Z"]
    back = item_from_google(body)
    assert back == item
    fields = advoware_fields(back)
    assert (fields["Dauertermin"], fields["Turnus"], fields["TurnusArt"]) == (1, 2, art)
    assert fields["DatumBis"] == "2026-12-31T00:00:00Z" and fields["UhrzeitBis"] == "09:00:00"


def test_recurring_until_in_summer_and_endless_series():
    item = item_from_advoware(termin(Dauertermin=1, Turnus=1, TurnusArt=2, DatumBis="2026-07-31T00:00:00Z"))
    assert google_body(item)["recurrence"] == ["RRULE:FREQ=WEEKLY;INTERVAL=1;UNTIL=20260731T215959Z"]
    endless = item_from_advoware(termin(Dauertermin=1, Turnus=1, TurnusArt=2, DatumBis="2037-12-31T00:00:00Z"))
    assert endless.recurrence == Recurrence(Freq.WEEKLY, 1, None)
    assert google_body(endless)["recurrence"] == ["RRULE:FREQ=WEEKLY;INTERVAL=1"]
    assert advoware_fields(endless)["DatumBis"] == "2037-12-31T00:00:00Z"


def test_recurring_all_day():
    item = item_from_advoware(
        termin(Abwesenheit=1, Dauertermin=1, Turnus=1, TurnusArt=4, Datum="2026-05-01T00:00:00Z", DatumBis="2030-05-01T00:00:00Z", UhrzeitBis="23:59:00")
    )
    body = google_body(item)
    assert body["start"] == {"date": "2026-05-01"} and body["end"] == {"date": "2026-05-02"}
    assert body["recurrence"] == ["RRULE:FREQ=YEARLY;INTERVAL=1;UNTIL=20300501"]
    assert item_from_google(body) == item


def test_dauertermin_without_valid_turnus_is_single():
    item = item_from_advoware(termin(Dauertermin=1, Turnus=0, TurnusArt=2))
    assert item.recurrence is None


def test_parse_recurrence_variants():
    first = date(2026, 6, 10)  # a Wednesday
    assert parse_recurrence(["RRULE:FREQ=WEEKLY;BYDAY=WE"], first) == (Recurrence(Freq.WEEKLY, 1, None), None)
    assert parse_recurrence(["RRULE:FREQ=DAILY;COUNT=5;INTERVAL=2"], first) == (Recurrence(Freq.DAILY, 2, date(2026, 6, 18)), None)
    assert parse_recurrence(["RRULE:FREQ=MONTHLY;COUNT=3"], date(2026, 1, 31))[0] == Recurrence(Freq.MONTHLY, 1, date(2026, 3, 31))
    assert parse_recurrence(["RRULE:FREQ=WEEKLY;UNTIL=20260630"], first)[0] == Recurrence(Freq.WEEKLY, 1, date(2026, 6, 30))
    assert parse_recurrence(["RRULE:FREQ=WEEKLY;UNTIL=20260630T215959Z"], first)[0].until == date(2026, 6, 30)
    assert parse_recurrence([], first) == (None, None)
    # fallbacks: the raw rule is kept, no Recurrence
    for lines in (
        ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE"],
        ["RRULE:FREQ=MONTHLY;BYDAY=2MO"],
        ["RRULE:FREQ=HOURLY"],
        ["RRULE:FREQ=WEEKLY", "EXDATE;TZID=Europe/Berlin:20260617T090000"],
    ):
        rec, raw = parse_recurrence(lines, first)
        assert rec is None and raw == "\n".join(lines)


def test_unsupported_rule_falls_back_to_single_and_is_fingerprinted():
    ev = {
        "summary": "Sprechstunde",
        "start": {"dateTime": "2026-06-10T09:00:00+02:00"},
        "end": {"dateTime": "2026-06-10T10:00:00+02:00"},
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE"],
    }
    item = item_from_google(ev)
    assert item.recurrence is None and item.unsupported_rule
    assert advoware_fields(item)["Dauertermin"] == 0
    other = item_from_google(dict(ev, recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO,FR"]))
    assert other.fingerprint() != item.fingerprint()


def test_to_rrule_and_add_months():
    assert to_rrule(Recurrence(Freq.DAILY, 3, None), all_day=False) == "RRULE:FREQ=DAILY;INTERVAL=3"
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 15), 2) == date(2027, 2, 15)


# --- fingerprints and helpers -------------------------------------------------------------


def test_fingerprint_ignores_unmapped_fields_and_format_noise():
    a = item_from_advoware(termin())
    b = item_from_advoware(termin(Nr=123, Erinnerung=1, ZuletztGeaendertAm="2026-06-02T00:00:00.000Z", Text="Besprechung  "))
    assert a.fingerprint() == b.fingerprint()
    c = item_from_advoware(termin(Text="Besprechung neu"))
    assert a.fingerprint() != c.fingerprint()
    g1 = item_from_google(google_body(a, 1))
    g2 = item_from_google({**google_body(a, 1), "etag": "x", "updated": "2030-01-01T00:00:00Z", "colorId": "5", "description": "Akte mitbringen\r\n"})
    assert g1.fingerprint() == g2.fingerprint()
    # same instant written differently
    g3 = item_from_google({**google_body(a), "start": {"dateTime": "2026-06-10T07:00:00Z"}})
    assert g3.fingerprint() == g1.fingerprint()


def test_helpers():
    assert event_frnr({"extendedProperties": {"private": {FRNR_PROPERTY: "42"}}}) == 42
    assert event_frnr({"extendedProperties": {"private": {FRNR_PROPERTY: "x"}}}) is None
    assert event_frnr({}) is None
    assert is_syncable_event({"id": "a"}) and is_syncable_event({"eventType": "default"})
    assert not is_syncable_event({"recurringEventId": "m"}) and not is_syncable_event({"eventType": "outOfOffice"})
    assert belongs_to({"Anwalt": "mm"}, "MM") and belongs_to({"Anwalt": "AB", "Sb": "MM"}, "MM")
    assert not belongs_to({"Anwalt": "AB", "Sb": None}, "MM")


def test_camel_case_records_are_not_required_but_missing_optional_fields_are_fine():
    item = item_from_advoware({"FrNr": 5, "Datum": "2026-06-10T09:00:00"})
    assert item == CalendarItem("", "", "", False, datetime(2026, 6, 10, 9), datetime(2026, 6, 10, 9))
    assert google_body(item)["start"]["dateTime"] == "2026-06-10T09:00:00+02:00"
    assert datetime.fromisoformat(google_body(item)["start"]["dateTime"]).astimezone(UTC).hour == 7

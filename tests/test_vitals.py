"""Vital signs layer of the emergency screen: parsing, units, age, thresholds, NEWS2, plausibility.

Boundary tests pin every threshold on both sides, so a wrong number in data/triage/vitals.yaml fails here.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest
import yaml

from core.safety.vitals import (
    DEFAULT_VITALS_PATH,
    VitalFinding,
    VitalsConfigError,
    VitalsReport,
    VitalThresholds,
    read_vitals,
)


@pytest.fixture(scope="module")
def thresholds() -> VitalThresholds:
    return VitalThresholds.load()


def read(message: str, thresholds: VitalThresholds) -> VitalsReport:
    report = read_vitals(message, thresholds)
    for f in report.findings:
        assert message[f.start:f.end] == f.text, "a finding's span must point at its text"
    for r in report.rejected:
        assert message[r.start:r.end] == r.text
    return report


def only(report: VitalsReport) -> VitalFinding:
    """The one numeric finding (air/oxygen and consciousness words aside)."""
    numeric = [f for f in report.findings if f.measure not in ("oxygen", "consciousness")]
    assert len(numeric) == 1, report.findings
    return numeric[0]


# --------------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------------


def test_bundled_thresholds_load_and_cite_sources(thresholds: VitalThresholds) -> None:
    assert DEFAULT_VITALS_PATH.name == "vitals.yaml"
    assert all(r.source in thresholds.sources for r in thresholds.rules)
    assert all(c.source in thresholds.sources for c in thresholds.combinations)
    assert thresholds.news2.emergent_at == 7 and thresholds.news2.urgent_at == 5
    assert thresholds.news2.single_red_level == "urgent"


def _broken(tmp_path: Path, edit: object) -> str:
    data = yaml.safe_load(DEFAULT_VITALS_PATH.read_text(encoding="utf-8"))
    assert callable(edit)
    edit(data)
    path = tmp_path / "vitals.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(VitalsConfigError) as exc:
        VitalThresholds.load(path)
    return str(exc.value)


def test_invalid_level_names_the_rule_and_field(tmp_path: Path) -> None:
    msg = _broken(tmp_path, lambda d: d["rules"][0].update(level="critical"))
    assert "vitals.yaml: rules[0] (id 'gcs_severe').level: must be emergent|urgent" in msg


def test_unknown_source_is_named(tmp_path: Path) -> None:
    msg = _broken(tmp_path, lambda d: d["rules"][1].update(source="nice_ng999"))
    assert "gcs_reduced" in msg and "'nice_ng999'" in msg


def test_bad_age_text_is_named(tmp_path: Path) -> None:
    msg = _broken(tmp_path, lambda d: d["rules"][-1].update(age_from="ten years"))
    assert "age_from" in msg and "'ten years'" in msg


def test_bands_must_increase(tmp_path: Path) -> None:
    msg = _broken(tmp_path, lambda d: d["news2"]["bands"]["spo2"].reverse())
    assert "news2" in msg and "bands.spo2" in msg


def test_missing_field_and_bad_regex_are_named(tmp_path: Path) -> None:
    assert "news2.emergent_at: Field required" in _broken(tmp_path, lambda d: d["news2"].pop("emergent_at"))
    assert "question.asks[0]: not a valid regex" in _broken(tmp_path, lambda d: d["question"]["asks"].__setitem__(0, "(unclosed"))


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "vitals.yaml").write_text("rules: [unclosed", encoding="utf-8")
    with pytest.raises(VitalsConfigError, match="vitals.yaml: cannot read"):
        VitalThresholds.load(tmp_path / "vitals.yaml")


# --------------------------------------------------------------------------------------------------
# Formats people type
# --------------------------------------------------------------------------------------------------

FORMATS = [
    ("sats 85%", "spo2", 85, "sats 85%"),
    ("his sats of 85 this morning", "spo2", 85, "sats of 85"),
    ("O2 sat 88 on air", "spo2", 88, "O2 sat 88"),
    ("SpO2 89%", "spo2", 89, "SpO2 89%"),
    ("oxygen 85", "spo2", 85, "oxygen 85"),
    ("pulse ox 90%", "spo2", 90, "pulse ox 90%"),
    ("BP 60/40", "blood_pressure", 60, "BP 60/40"),
    ("bp is 70 over 40", "blood_pressure", 70, "bp is 70 over 40"),
    ("blood pressure 190/125", "blood_pressure", 190, "blood pressure 190/125"),
    ("systolic 85", "blood_pressure", 85, "systolic 85"),
    ("she was 210/130 mmHg at the GP", "blood_pressure", 210, "210/130 mmHg"),
    ("HR 150", "heart_rate", 150, "HR 150"),
    ("pulse 38", "heart_rate", 38, "pulse 38"),
    ("heart rate is 140 bpm", "heart_rate", 140, "heart rate is 140 bpm"),
    ("he's at 135 bpm", "heart_rate", 135, "135 bpm"),
    ("RR 32", "respiratory_rate", 32, "RR 32"),
    ("resp rate 30", "respiratory_rate", 30, "resp rate 30"),
    ("breathing 35 times a minute", "respiratory_rate", 35, "breathing 35 times a minute"),
    ("temp 39.5", "temperature", 39.5, "temp 39.5"),
    ("temperature of 40.1C", "temperature", 40.1, "temperature of 40.1C"),
    ("she is 38.6 degrees", "temperature", 38.6, "38.6 degrees"),
    ("102.4F", "temperature", 39.1, "102.4F"),
    ("temp 101", "temperature", 38.3, "temp 101"),
    ("temp 38,5", "temperature", 38.5, "temp 38,5"),
    ("obs: T 38.9", "temperature", 38.9, "T 38.9"),
    ("glucose 29", "glucose", 29, "glucose 29"),
    ("sugar is 1.9", "glucose", 1.9, "sugar is 1.9"),
    ("BM 2.1", "glucose", 2.1, "BM 2.1"),
    ("CBG 31", "glucose", 31, "CBG 31"),
    ("blood sugar 450 mg/dL", "glucose", 25.0, "blood sugar 450 mg/dL"),
    ("bm reads HI", "glucose", 33.3, "bm reads HI"),
    ("ketones 4.2", "ketones", 4.2, "ketones 4.2"),
    ("GCS 8", "gcs", 8, "GCS 8"),
    ("GCS 8/15", "gcs", 8, "GCS 8/15"),
    ("E2V2M4", "gcs", 8, "E2V2M4"),
    ("GCS E3 V4 M6", "gcs", 13, "GCS E3 V4 M6"),
    ("K+ 7.1", "potassium", 7.1, "K+ 7.1"),
    ("potassium 6.8", "potassium", 6.8, "potassium 6.8"),
]


@pytest.mark.parametrize(("message", "measure", "normalised", "text"), FORMATS)
def test_formats(message: str, measure: str, normalised: float, text: str, thresholds: VitalThresholds) -> None:
    f = only(read(message, thresholds))
    assert (f.measure, f.normalised, f.text) == (measure, pytest.approx(normalised), text)
    assert f.role == "reading"


def test_blood_pressure_keeps_both_numbers(thresholds: VitalThresholds) -> None:
    f = only(read("bp is 70 over 40", thresholds))
    assert (f.value, f.diastolic, f.canonical_unit) == (70, 40, "mmHg")


def test_fahrenheit_and_mg_dl_say_how_they_were_converted(thresholds: VitalThresholds) -> None:
    assert only(read("102.4F", thresholds)).note == "102.4 °F = 39.1 °C"
    assert only(read("blood sugar 450 mg/dL", thresholds)).note == "450 mg/dL = 25 mmol/L"
    unitless = only(read("glucose 290", thresholds))
    assert unitless.normalised == pytest.approx(16.1) and "no unit: read as mg/dL" in (unitless.note or "")


def test_several_values_in_one_message(thresholds: VitalThresholds) -> None:
    report = read("72 yo RR 26, sats 90% on 2L, HR 120, BP 105/70, temp 38.5, new confusion", thresholds)
    measures = [f.measure for f in report.findings]
    assert measures == ["respiratory_rate", "spo2", "oxygen", "heart_rate", "blood_pressure", "temperature", "consciousness"]


def test_ranges_give_both_ends(thresholds: VitalThresholds) -> None:
    report = read("HR 120-140", thresholds)
    assert [f.normalised for f in report.findings] == [120, 140]
    assert report.level == "urgent"  # 140 ≥ 131


# --------------------------------------------------------------------------------------------------
# Not vital signs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "give aspirin 300 mg and wait 20 minutes",
        "What dose of paracetamol, 500 mg every 4 hours for 2 weeks?",
        "my 2 year old has had a fever for 2 weeks, seen on 12/03/2024 at 20:30",
        "BP check on 12/03/2024",
        "he had 2 sugars in his tea",
        "vitamin K 10 mg IM at birth",
        "no BM for 3 days",
        "it's 35 degrees outside and he's dizzy",
        "head of bed at 30 degrees",
        "available 24/7, 1/2 tablet",
        "temp for 2 weeks",
        "he is 80 kg",
        "72F with a cough",
        "HbA1c 58",
        "sugar 2 spoons in tea",
        "I sat at 90 degrees in bed",
        "waited 2 hr 30 min",
        "I don't 38 know",
    ],
)
def test_no_false_hits(message: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.findings == [] and report.level is None


@pytest.mark.parametrize("message", ["O2 28% via venturi", "on oxygen 40%", "oxygen at 60%"])
def test_inspired_oxygen_is_not_a_saturation(message: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert not [f for f in report.findings if f.measure == "spo2"] and report.level is None


@pytest.mark.parametrize(
    "message", ["What BP target for over-80s, 150/90?", "target BP <140/90 in diabetes", "aim for sats 94-98% in most patients",
                "keep sats 88-92% in COPD"]
)
def test_targets_are_not_readings(message: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.findings and all(f.role == "target" for f in report.findings)
    assert report.level is None and report.news2 is None


def test_a_target_does_not_hide_a_reading_in_the_next_clause(thresholds: VitalThresholds) -> None:
    report = read("target sats 88-92%, his sats are 85%", thresholds)
    assert [f.role for f in report.findings] == ["target", "target", "reading"]
    assert report.level == "urgent"


def test_negated_confusion_is_not_a_finding(thresholds: VitalThresholds) -> None:
    assert read("not confused, alert", thresholds).findings == []
    assert [f.category for f in read("he is now confused", thresholds).findings] == ["C"]


# --------------------------------------------------------------------------------------------------
# Plausibility
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "note"),
    [
        ("SpO2 120%", "SpO2 120 is not possible (SpO2 > 100)"),
        ("HR 350", "HR 350 is not possible (HR > 300)"),
        ("temp 3.9", "temperature 3.9 is not possible (did you mean 39?)"),
        ("glucose 290 mmol/L", "glucose 290 mmol/L is not possible; probably mg/dL (= 16.1 mmol/L)"),
        ("BP 80/120", "BP 80/120 is not a possible blood pressure"),
        ("GCS 2", "GCS 2 is not possible (GCS < 3)"),
        ("GCS 16", "GCS 16 is not possible (GCS > 15)"),
        ("potassium 40 mmol", "K+ 40 is not possible (K+ > 10)"),
        ("RR 250", "RR 250 is not possible (RR > 100)"),
    ],
)
def test_impossible_values_are_rejected_not_escalated(message: str, note: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.findings == [] and report.level is None
    assert [r.note for r in report.rejected] == [note]


def test_limits_of_the_plausible_range_are_kept(thresholds: VitalThresholds) -> None:
    assert only(read("sats 100%", thresholds)).normalised == 100
    assert only(read("HR 300", thresholds)).level == "urgent"


# --------------------------------------------------------------------------------------------------
# Age
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "years"),
    [
        ("3-week-old with temp 37", 21 / 365.25),
        ("3 wk old", 21 / 365.25),
        ("6 month old", 0.5),
        ("72F", 72),
        ("72 M, sats 95", 72),
        ("72 yo", 72),
        ("aged 4", 4),
        ("aged 4 months", 4 / 12),
        ("my 2 year old", 2),
        ("10 day old", 10 / 365.25),
        ("baby is 7 weeks", 49 / 365.25),
        ("a 30-year-old man", 30),
        ("Patient is 45, BP 150/90", 45),
    ],
)
def test_age(message: str, years: float, thresholds: VitalThresholds) -> None:
    assert read(message, thresholds).age_years == pytest.approx(years, abs=1e-3)


@pytest.mark.parametrize("message", ["she is 37.0", "for 2 weeks", "he is 2 weeks post-op", "after a 30m walk", "twice in 3 months"])
def test_durations_are_not_ages(message: str, thresholds: VitalThresholds) -> None:
    assert read(message, thresholds).age_years is None


def test_age_word_is_a_range(thresholds: VitalThresholds) -> None:
    report = read("my baby has a temp of 38.3", thresholds)
    assert report.age_years is None and report.age_range_years == (0.0, 1.0)
    assert report.level == "urgent", "a baby might be under 3 months, but might not: no higher than urgent"
    assert "age not given" in report.findings[0].reason
    assert read("had a baby last week, temp 38.3", thresholds).age_range_years is None


def test_newborn_is_under_3_months(thresholds: VitalThresholds) -> None:
    assert read("my newborn has a temp of 38.1", thresholds).level == "emergent"


# --------------------------------------------------------------------------------------------------
# Temperature by age (NICE NG143) and in adults
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("temp 38.2 in a 3-week-old", "emergent"),
        ("temp 37.9 in a 3-week-old", None),
        ("10 week old, temp 38.0", "emergent"),
        ("temp 38.2 in a 30-year-old", None),
        ("4 month old temp 39.0", "urgent"),
        ("4 month old temp 38.9", None),
        ("6 month old temp 39.2", "urgent"),
        ("7 month old temp 39.2", None),
        ("my 2 year old temp 39.8", None),
        ("my 3 year old temp 35.8", "urgent"),
        ("temp 40.0", "urgent"),
        ("temp 39.9", None),
        ("temp 35.0", "urgent"),
        ("temp 35.1", None),
        ("temp 31.9", "emergent"),
        ("temp 32", "urgent"),
    ],
)
def test_temperature_by_age(message: str, level: str | None, thresholds: VitalThresholds) -> None:
    assert read(message, thresholds).level == level


# --------------------------------------------------------------------------------------------------
# Children: NICE NG51 high-risk limits, NG143 red RR, APLS bradycardia, PALS hypotension
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("my 6 month old HR 159", None),
        ("my 6 month old HR 160", "urgent"),
        ("my 2 year old HR 149", None),
        ("my 2 year old HR 150", "urgent"),
        ("my 4 year old HR 139", None),
        ("my 4 year old HR 140", "urgent"),
        ("my 5 year old HR 130", "urgent"),
        ("my 7 year old HR 120", "urgent"),
        ("my 9 year old HR 114", None),
        ("my 9 year old HR 115", "urgent"),
        ("my 14 year old HR 130", None),
        ("my 14 year old HR 131", "urgent"),
        ("my 6 month old RR 59", None),
        ("my 6 month old RR 60", "urgent"),
        ("my 6 month old RR 61", "emergent"),
        ("my 2 year old RR 49", None),
        ("my 2 year old RR 50", "urgent"),
        ("my 4 year old RR 40", "urgent"),
        ("my 5 year old RR 28", None),
        ("my 5 year old RR 29", "urgent"),
        ("my 10 year old RR 25", "urgent"),
        ("my 4 year old sats 96%", None),
        ("my 4 year old sats 95%", "urgent"),
        ("my 8 year old sats 92%", None),
        ("my 8 year old sats 91%", "urgent"),
        ("my 8 year old sats 89%", "emergent"),
        ("my 5 year old HR 59", "emergent"),
        ("my 5 year old HR 60", None),
        ("my 5 year old BP 79/40", "emergent"),
        ("my 5 year old BP 80/40", None),
        ("my 6 month old BP 69/40", "emergent"),
        ("my 12 year old BP 89/50", "emergent"),
        ("my 12 year old BP 90/50", None),
    ],
)
def test_paediatric_limits(message: str, level: str | None, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.level == level
    assert report.news2 is None, "NEWS2 is for adults"


def test_two_high_risk_signs_in_a_child_are_emergent(thresholds: VitalThresholds) -> None:
    report = read("my 2 year old HR 160 RR 55", thresholds)
    assert report.level == "emergent" and "child_several_high_risk" in report.matched_rules


def test_adult_values_in_a_child_are_not_scored_as_adult(thresholds: VitalThresholds) -> None:
    assert read("my 4 year old HR 135", thresholds).level is None  # NEWS2 would give 3 points


# --------------------------------------------------------------------------------------------------
# Adults: NEWS2 single parameters (RCP 2017) and aggregation
# --------------------------------------------------------------------------------------------------

NEWS2_BANDS = [
    ("RR", [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)]),
    ("sats", [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0)]),
    ("systolic", [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]),
    ("HR", [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)]),
    ("temp", [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)]),
]


@pytest.mark.parametrize(("label", "value", "points"), [(lab, v, p) for lab, cases in NEWS2_BANDS for v, p in cases])
def test_news2_single_parameter_points(label: str, value: float, points: int, thresholds: VitalThresholds) -> None:
    report = read(f"{label} {value}", thresholds)
    assert (report.news2, report.news2_parameters) == (points, 1)
    if points == 3:
        assert report.level in ("urgent", "emergent") and "news2_single_red" in report.matched_rules


def test_news2_consciousness_and_oxygen(thresholds: VitalThresholds) -> None:
    assert read("new confusion", thresholds).news2 == 3
    assert read("GCS 14", thresholds).news2 == 3
    assert read("GCS 15", thresholds).news2 == 0
    assert read("sats 96% on 2L", thresholds).news2 == 2
    assert read("sats 96% on air", thresholds).news2 == 0
    assert (read("sats 95% room air", thresholds).news2_parameters, read("sats 95% RA", thresholds).news2_parameters) == (2, 2)


@pytest.mark.parametrize(
    ("message", "news2", "level"),
    [
        ("RR 22, HR 115", 4, None),
        ("RR 22, HR 115, temp 38.5", 5, "urgent"),
        ("RR 22, HR 115, temp 38.5, sats 95%", 6, "urgent"),
        ("RR 22, HR 115, temp 38.5, sats 93%", 7, "emergent"),
        ("new confusion, RR 26, HR 125, BP 95/60, temp 38.6 on oxygen", 13, "emergent"),
        ("BP 120/80, HR 80, RR 16, sats 97%, temp 37", 0, None),
    ],
)
def test_news2_aggregate(message: str, news2: int, level: str | None, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert (report.news2, report.level) == (news2, level)


def test_news2_counts_parameters_and_explains(thresholds: VitalThresholds) -> None:
    report = read("sats 85 % and RR 32", thresholds)
    assert (report.news2, report.news2_parameters, report.level) == (6, 2, "urgent")
    assert report.findings[0].reason == "SpO2 85 % ≤ 91 %, NEWS2 red"
    assert report.explanation == (
        "vital signs: 'sats 85 %' (SpO2 85 % ≤ 91 %, NEWS2 red) + 'RR 32' (RR 32 ≥ 25, NEWS2 red); "
        "NEWS2 6 from 2 of 7 parameters → urgent"
    )


def test_single_mildly_abnormal_value_is_not_escalated(thresholds: VitalThresholds) -> None:
    for message in ("BM 3.5", "HR 105", "temp 38.4", "sats 94%", "RR 22", "BP 165/100", "glucose 12", "K+ 5.6"):
        assert read(message, thresholds).level is None, message


@pytest.mark.parametrize(
    ("message", "level", "rule"),
    [
        ("sats 84% on air", "emergent", "spo2_critical"),
        ("sats 85% on air", "urgent", "news2_single_red"),
        ("BP 69/40", "emergent", "adult_profound_hypotension"),
        ("BP 70/40", "urgent", "news2_single_red"),
        ("Asthmatic patient can't complete sentences, sats 91%", "emergent", "life_threatening_asthma"),
        ("my 6 year old with asthma, sats 91%", "emergent", "life_threatening_asthma"),
    ],
)
def test_critical_values(message: str, level: str, rule: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.level == level and rule in report.matched_rules


# --------------------------------------------------------------------------------------------------
# Blood pressure (NICE NG136, NG133)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("BP 179/119", None),
        ("BP 180/100", "urgent"),
        ("BP 170/120", "urgent"),
        ("blood pressure 190/125 with chest pain", "emergent"),
        ("BP 200/130, severe headache and blurred vision", "emergent"),
        ("Pt in clinic with BP 186/124 and papilloedema on fundoscopy - what do I do?", "urgent"),
        ("BP 190/125, no chest pain", "urgent"),
        ("pregnant, BP 160/100", "urgent"),
        ("pregnant, BP 159/109", None),
        ("32 weeks pregnant, BP 165/112 and headache", "emergent"),
    ],
)
def test_blood_pressure(message: str, level: str | None, thresholds: VitalThresholds) -> None:
    assert read(message, thresholds).level == level


# --------------------------------------------------------------------------------------------------
# Glucose, ketones (JBDS), potassium (UK Kidney Association), GCS
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "level", "rules"),
    [
        ("BM 4.0", None, []),
        ("BM 3.9", None, ["hypoglycaemia"]),
        ("Patient is alert, sugar 3.5, can swallow - how do I treat the hypo?", None, ["hypoglycaemia"]),
        ("BM 2.9", "urgent", ["hypoglycaemia_severe", "hypoglycaemia"]),
        ("My diabetic husband is confused and his sugar is 2.1", "emergent", ["hypoglycaemia_with_neuro_signs"]),
        ("bm reads LO", "urgent", ["hypoglycaemia_severe"]),
        ("glucose 19.9", None, []),
        ("glucose 20", "urgent", ["hyperglycaemia_severe"]),
        ("glucose 30", "urgent", ["hyperglycaemia_hhs_range"]),
        ("bm reads HI", "urgent", ["hyperglycaemia_hhs_range"]),
        ("ketones 2.9", None, []),
        ("ketones 3.0", "urgent", ["ketonaemia"]),
        ("glucose 11 and ketones 3.2", "urgent", ["ketonaemia"]),
        ("glucose 11.1 and ketones 3.0", "emergent", ["possible_dka"]),
        ("glucose 29 ketones 4.2", "emergent", ["possible_dka"]),
        ("BM HI, ketones 3.5", "emergent", ["possible_dka"]),
        ("glucose 14, ketones 1.5", "urgent", ["dka_risk"]),
        ("glucose 14, ketones 1.4", None, []),
        ("Type 1 diabetic with ketones 4.1, vomiting", "emergent", ["possible_dka_known_diabetes"]),
        ("ketones 4.1, no diabetes known", "urgent", ["ketonaemia"]),
        ("urine ketones 3", None, []),
        ("K+ 5.9", None, []),
        ("K+ 6.0", "urgent", ["hyperkalaemia_moderate"]),
        ("K+ 6.4", "urgent", ["hyperkalaemia_moderate"]),
        ("K+ 6.5", "emergent", ["hyperkalaemia_severe"]),
        ("K 2.5", None, []),
        ("K 2.4", "urgent", ["hypokalaemia_severe"]),
        ("GCS 8", "emergent", ["gcs_severe"]),
        ("GCS 9", "urgent", ["gcs_reduced"]),
        ("GCS 15", None, []),
        ("E4V5M6", None, []),
        ("only responds to pain", "emergent", ["avpu_pain_or_unresponsive"]),
    ],
)
def test_metabolic_and_neuro(message: str, level: str | None, rules: list[str], thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.level == level
    assert set(rules) <= set(report.matched_rules)


def test_a_flag_only_rule_is_explained_without_a_level(thresholds: VitalThresholds) -> None:
    report = read("sugar 3.5", thresholds)
    assert report.level is None and report.matched_rules == ["hypoglycaemia"]
    assert report.explanation == "vital signs: 'sugar 3.5' (glucose 3.5 mmol/L: glucose < 4.0 mmol/L (hypoglycaemia: treat now))"


def test_possible_dka_explanation_is_not_repeated(thresholds: VitalThresholds) -> None:
    report = read("glucose 29 ketones 4.2", thresholds)
    assert "possible DKA" in report.explanation and "at risk of DKA" not in report.explanation


# --------------------------------------------------------------------------------------------------
# Knowledge questions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "what sats target in COPD, 88-92%?",
        "at what glucose is DKA diagnosed, 11?",
        "is a GCS of 8 an indication to intubate?",
        "What potassium level needs calcium gluconate, 6.5?",
        "Which heart rate counts as tachycardia in toddlers, 150?",
    ],
)
def test_knowledge_questions_are_question_only(message: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert report.question_only and report.findings


def test_a_generic_age_does_not_make_a_question_a_presentation(thresholds: VitalThresholds) -> None:
    assert read("Which heart rate counts as tachycardia in a 2 year old?", thresholds).question_only
    assert not read("Which heart rate counts as tachycardia in my 2 year old?", thresholds).question_only


@pytest.mark.parametrize(
    "message",
    [
        "My dad's sats are 85%, what should I do?",
        "sats 85% what do I do?",
        "Is sats of 85 bad?",
        "72F GCS 8, is that an indication to intubate?",
        "patient has a GCS of 8, what is the threshold for intubation?",
        "GCS 8",
    ],
)
def test_presentations_are_not_question_only(message: str, thresholds: VitalThresholds) -> None:
    report = read(message, thresholds)
    assert not report.question_only and report.level is not None


# --------------------------------------------------------------------------------------------------
# Performance
# --------------------------------------------------------------------------------------------------


def test_typical_message_under_a_millisecond(thresholds: VitalThresholds) -> None:
    messages = [
        "72 yo RR 26 sats 90% on 2L HR 120 temp 38.5",
        "My dad is confused and his sugar is 2.1, what should I do?",
        "What is the first line treatment for hypertension in a 55 year old?",
        "my 6 week old has a temp of 38.3 and is not feeding",
    ]
    # Best of several short rounds with the collector paused: other jobs on a shared CI machine add noise,
    # not cost per message.
    gc.collect()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(10):
                for m in messages:
                    read_vitals(m, thresholds)
            best = min(best, (time.perf_counter() - start) / (10 * len(messages)))
    finally:
        gc.enable()
    assert best < 0.001, f"{best * 1000:.2f} ms per message"

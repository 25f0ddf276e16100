#!/usr/bin/env python3
"""Generate the binary files of the demo guideline corpus in data/guidelines/.

DEMO SUMMARY for software testing - not clinical advice. All content below is
fictional demo material issued by "Northbridge Health Trust (demo)".

Generates:
  chest_pain.pdf          (fpdf2, 4 pages, one topic block per page)
  stroke_tia.pdf          (fpdf2, 4 pages, one topic block per page)
  sepsis.docx             (python-docx, Heading 1/2 styles, 2 tables)
  af_anticoagulation.docx (python-docx, Heading 1/2 styles, 3 tables)

The Markdown, HTML and TXT guidelines in data/guidelines/ are hand-written and
are not touched by this script.

Usage:  python scripts/make_demo_corpus.py [--out DIR]

Output is deterministic: fixed PDF creation dates, fixed DOCX core-property
dates and fixed ZIP entry timestamps, so re-running does not change bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

from docx import Document
from docx.shared import Pt
from fpdf import FPDF
from fpdf.enums import XPos, YPos

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "guidelines"

ISSUER = "Northbridge Health Trust (demo)"
DEMO_NOTICE = "DEMO SUMMARY for software testing - not clinical advice"
DEMO_NOTICE_LONG = (
    "This is a fictional guideline written to test a question-answering "
    "application. Do not use it to make decisions about patient care."
)
FIXED_TIME = dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
ZIP_TIME = (2024, 1, 1, 0, 0, 0)

# A block is a (kind, payload) tuple:
#   ("h1", "1. Scope")                  numbered top-level heading
#   ("h2", "2.1 Red flags")             numbered sub-heading
#   ("p", "paragraph text")
#   ("bullets", ["item", ...])
#   ("table", {"header": [...], "rows": [[...], ...]})   (DOCX only)
Block = tuple[str, Any]

# ---------------------------------------------------------------------------
# 5. Chest pain (PDF). Each inner list is exactly one PDF page.
# ---------------------------------------------------------------------------
CHEST_PAIN: dict[str, Any] = {
    "file": "chest_pain.pdf",
    "title": "Acute Chest Pain: Assessment of Suspected Acute Coronary Syndrome",
    "version": "2.0",
    "effective_date": "2024-03-01",
    "specialty": "Cardiology",
    "pages": [
        [
            ("h1", "1. Scope"),
            (
                "p",
                "This guideline covers the initial assessment of adults aged 18 years and over "
                "who present with acute chest pain of suspected cardiac origin to primary care, "
                "the ambulance service or the emergency department. It does not cover chronic "
                "stable angina or chest pain in children.",
            ),
            ("h1", "2. Initial assessment"),
            ("h2", "2.1 Clinical features"),
            (
                "p",
                "Features suggesting acute coronary syndrome (ACS) include pain in the chest "
                "and/or arms, back or jaw lasting longer than 15 minutes, pain associated with "
                "nausea, vomiting, marked sweating or breathlessness, and pain with haemodynamic "
                "instability. Women, older people and people with diabetes more often present "
                "with atypical symptoms. Do not use the response to glyceryl trinitrate (GTN) to "
                "make a diagnosis.",
            ),
            ("h2", "2.2 Red flags"),
            (
                "bullets",
                [
                    "Current chest pain, or chest pain in the last 12 hours with an abnormal or "
                    "unavailable ECG: call 999 and refer as an emergency.",
                    "Chest pain 12 to 72 hours ago: refer for same-day hospital assessment.",
                    "Chest pain more than 72 hours ago: carry out a full assessment with an ECG and "
                    "troponin before deciding on referral.",
                    "Signs of shock, reduced consciousness, heart failure or arrhythmia: emergency "
                    "resuscitation pathway.",
                    "Tearing pain radiating to the back or a pulse or blood pressure difference "
                    "between the arms suggests aortic dissection; pleuritic pain with hypoxia "
                    "suggests pulmonary embolism.",
                ],
            ),
            ("h2", "2.3 Immediate treatment"),
            (
                "bullets",
                [
                    "Aspirin 300 mg as a single loading dose, chewed or dispersed, unless the person "
                    "is allergic to aspirin.",
                    "GTN 400 micrograms sublingually (1 to 2 sprays), repeated after 5 minutes if "
                    "pain persists and systolic BP is above 90 mmHg.",
                    "IV morphine with an antiemetic for pain not relieved by GTN.",
                    "Do not routinely give oxygen. Give oxygen only if SpO2 is below 94%, aiming for "
                    "SpO2 94-98% (88-92% if at risk of hypercapnic respiratory failure).",
                ],
            ),
        ],
        [
            ("h1", "3. ECG assessment"),
            ("h2", "3.1 Timing of the ECG"),
            (
                "p",
                "Record a 12-lead ECG as soon as possible and within 10 minutes of first medical "
                "contact or arrival in the emergency department. Send pre-hospital ECGs ahead to "
                "the receiving hospital. Repeat the ECG every 15 to 30 minutes while pain "
                "continues, and whenever symptoms change. A normal ECG does not rule out ACS.",
            ),
            ("h2", "3.2 STEMI criteria"),
            (
                "p",
                "Diagnose ST-elevation myocardial infarction (STEMI) in a person with symptoms "
                "of ACS and any of the following ECG findings:",
            ),
            (
                "bullets",
                [
                    "New ST elevation at the J point in two contiguous leads of 1 mm (0.1 mV) or "
                    "more in the limb leads.",
                    "New ST elevation of 2 mm (0.2 mV) or more in leads V2 to V3, or 1 mm or more "
                    "in the other chest leads.",
                    "New or presumed new left bundle branch block.",
                    "Posterior infarction: ST depression in V1 to V3 with dominant R waves, "
                    "confirmed by ST elevation in posterior leads V7 to V9.",
                ],
            ),
            ("h2", "3.3 Reperfusion"),
            (
                "bullets",
                [
                    "Offer coronary reperfusion to people with STEMI whose symptoms started within the past 12 hours.",
                    "Primary percutaneous coronary intervention (PCI) is the preferred strategy if "
                    "it can be delivered within 120 minutes of the time when fibrinolysis could "
                    "have been given.",
                    "If primary PCI cannot be delivered within 120 minutes, give fibrinolysis, "
                    "ideally within 30 minutes of arrival (door-to-needle time).",
                    "Record an ECG 60 to 90 minutes after fibrinolysis. If ST-segment resolution is "
                    "less than 50%, transfer immediately for rescue PCI.",
                ],
            ),
        ],
        [
            ("h1", "4. Troponin testing"),
            ("h2", "4.1 Sampling"),
            (
                "p",
                "Measure high-sensitivity troponin at presentation and repeat it 3 hours later. "
                "A validated 0 and 1 hour algorithm may be used where the laboratory supports "
                "it. A single sample can rule out myocardial infarction if the presentation "
                "troponin is below the limit of detection and symptoms started more than 3 "
                "hours before the sample was taken. Do not use troponin to decide on "
                "reperfusion in STEMI.",
            ),
            ("h2", "4.2 Interpretation"),
            (
                "p",
                "Myocardial infarction is diagnosed when troponin is above the 99th percentile "
                "upper reference limit with a rise and/or fall between samples, together with "
                "symptoms or ECG changes of ischaemia. A raised but stable troponin suggests "
                "another cause of myocardial injury, such as sepsis, pulmonary embolism, renal "
                "failure or myocarditis. Unstable angina is diagnosed when symptoms are typical "
                "but troponin is not raised.",
            ),
            ("h1", "5. NSTEMI and unstable angina"),
            ("h2", "5.1 Risk stratification"),
            (
                "p",
                "Estimate 6-month mortality with the GRACE score. Offer coronary angiography "
                "within 72 hours of admission to people with a predicted 6-month mortality "
                "above 3.0%. Offer immediate angiography to people who are clinically unstable "
                "(ongoing pain, haemodynamic instability or life-threatening arrhythmia).",
            ),
            ("h2", "5.2 Antithrombotic treatment"),
            (
                "bullets",
                [
                    "Continue aspirin 75 mg once daily lifelong after the 300 mg loading dose.",
                    "Add ticagrelor: 180 mg loading dose, then 90 mg twice daily for 12 months, "
                    "unless there is a high bleeding risk.",
                    "Offer fondaparinux 2.5 mg subcutaneously once daily unless angiography is "
                    "planned within 24 hours.",
                    "People already taking an anticoagulant for atrial fibrillation need a "
                    "cardiology decision on combined antithrombotic treatment.",
                ],
            ),
        ],
        [
            ("h1", "6. Discharge and referral"),
            ("h2", "6.1 Discharge after rule-out"),
            (
                "p",
                "People may be discharged from the emergency department if myocardial "
                "infarction has been ruled out by troponin testing, the ECG is normal or "
                "unchanged, they are pain free and there is no other serious cause of chest "
                "pain. If stable angina is suspected, refer to the rapid access chest pain "
                "clinic to be seen within 2 weeks. CT coronary angiography is the first-line "
                "investigation for stable chest pain of suspected cardiac origin.",
            ),
            ("h2", "6.2 Secondary prevention after ACS"),
            (
                "bullets",
                [
                    "Refer every person to cardiac rehabilitation before discharge; the programme "
                    "should start within 10 days of discharge.",
                    "Offer atorvastatin 80 mg once daily, an ACE inhibitor, and a beta-blocker "
                    "(particularly if left ventricular function is reduced).",
                    "Record an echocardiogram to assess left ventricular function.",
                    "Give advice on smoking cessation, diet, physical activity and blood pressure "
                    "control (see the Northbridge hypertension guideline).",
                ],
            ),
            ("h2", "6.3 Driving and return to work"),
            (
                "p",
                "Car and motorcycle (Group 1) drivers may resume driving 1 week after ACS "
                "treated successfully with angioplasty, if left ventricular ejection fraction "
                "is at least 40% and no further revascularisation is planned. Otherwise they "
                "should not drive for 4 weeks. Bus and lorry (Group 2) drivers must notify the "
                "DVLA and stop driving for at least 6 weeks. Most people can return to office "
                "work 2 to 6 weeks after an uncomplicated ACS.",
            ),
        ],
    ],
}

# ---------------------------------------------------------------------------
# 6. Stroke and TIA (PDF). Each inner list is exactly one PDF page.
# ---------------------------------------------------------------------------
STROKE_TIA: dict[str, Any] = {
    "file": "stroke_tia.pdf",
    "title": "Stroke and Transient Ischaemic Attack: Recognition and Early Management",
    "version": "1.4",
    "effective_date": "2024-07-01",
    "specialty": "Stroke medicine",
    "pages": [
        [
            ("h1", "1. Scope"),
            (
                "p",
                "This guideline covers the recognition and early management of suspected "
                "acute stroke and transient ischaemic attack (TIA) in adults aged 16 years and "
                "over, in the community, the ambulance service and the emergency department. "
                "It does not cover subarachnoid haemorrhage management, stroke in children, or "
                "long-term rehabilitation.",
            ),
            ("h1", "2. Recognition"),
            ("h2", "2.1 FAST test"),
            (
                "p",
                "Outside hospital, use the FAST test: Face (has the face fallen on one side, "
                "can the person smile?), Arm (can the person raise both arms and keep them "
                "there?), Speech (is speech slurred?), Time (call 999 immediately if any one of "
                "these signs is present). Record the time of symptom onset, or the time the "
                "person was last known to be well.",
            ),
            ("h2", "2.2 ROSIER score in the emergency department"),
            (
                "p",
                "Use the ROSIER (Recognition of Stroke in the Emergency Room) score. Score -1 "
                "each for loss of consciousness or syncope and for seizure activity; score +1 "
                "each for asymmetric facial weakness, asymmetric arm weakness, asymmetric leg "
                "weakness, speech disturbance and visual field defect. Stroke is likely if the "
                "ROSIER score is greater than 0.",
            ),
            ("h2", "2.3 Stroke mimics and red flags"),
            (
                "bullets",
                [
                    "Check capillary blood glucose in everyone with sudden neurological symptoms. "
                    "If it is below 4.0 mmol/L, treat as in the Northbridge hypoglycaemia "
                    "guideline and reassess the symptoms.",
                    "Other mimics include seizure with post-ictal weakness, migraine with aura, "
                    "sepsis and functional disorders.",
                    "Features suggesting intracerebral haemorrhage: sudden severe (thunderclap) "
                    "headache, vomiting, reduced consciousness, or current anticoagulant use.",
                ],
            ),
        ],
        [
            ("h1", "3. Acute stroke management"),
            ("h2", "3.1 Brain imaging"),
            (
                "p",
                "Perform non-contrast CT of the head immediately, and at the latest within 1 "
                "hour of arrival, if any of the following apply: thrombolysis or thrombectomy "
                "may be indicated; the person is taking an anticoagulant or has a known "
                "bleeding tendency; Glasgow Coma Scale (GCS) score below 13; unexplained "
                "progressive or fluctuating symptoms; papilloedema, neck stiffness or fever; "
                "severe headache at onset. Add CT angiography if thrombectomy is being "
                "considered.",
            ),
            ("h2", "3.2 Thrombolysis"),
            (
                "bullets",
                [
                    "Offer alteplase within 4.5 hours of known symptom onset, or of the time last "
                    "known well, once intracranial haemorrhage has been excluded.",
                    "Dose: alteplase 0.9 mg/kg (maximum 90 mg). Give 10% of the dose as an IV "
                    "bolus over 1 minute and the remainder as an IV infusion over 60 minutes.",
                    "Blood pressure must be below 185/110 mmHg before thrombolysis and kept below "
                    "180/105 mmHg for the first 24 hours after it.",
                ],
            ),
            ("h2", "3.3 Thrombectomy"),
            (
                "p",
                "Offer mechanical thrombectomy as soon as possible to people last known well "
                "within 6 hours who have a confirmed proximal anterior circulation occlusion, "
                "together with thrombolysis if they are within 4.5 hours. Thrombectomy can be "
                "offered up to 24 hours after the person was last known well if imaging shows "
                "potential to salvage brain tissue.",
            ),
            ("h2", "3.4 Aspirin and early care"),
            (
                "bullets",
                [
                    "Once haemorrhage is excluded, give aspirin 300 mg daily, orally or rectally, "
                    "as soon as possible and within 24 hours of onset. For people given "
                    "thrombolysis, start aspirin 24 hours after the thrombolysis.",
                    "Continue aspirin 300 mg daily for 2 weeks, then start clopidogrel 75 mg once daily long term.",
                    "Screen swallowing within 4 hours of arrival and before giving any oral food, fluid or medication.",
                    "Admit directly to a hyperacute stroke unit within 4 hours of arrival.",
                ],
            ),
        ],
        [
            ("h1", "4. Transient ischaemic attack"),
            ("h2", "4.1 Immediate management of suspected TIA"),
            (
                "bullets",
                [
                    "Give aspirin 300 mg immediately to anyone with a suspected TIA, unless they "
                    "have a bleeding disorder, are taking an anticoagulant (they need urgent "
                    "imaging to exclude haemorrhage first) or are allergic to aspirin.",
                    "Refer for specialist assessment within 24 hours of symptom onset.",
                    "If the TIA happened more than 1 week ago, refer for specialist assessment within 7 days.",
                    "Do not use the ABCD2 score or other risk scores to decide the urgency of referral.",
                ],
            ),
            ("h2", "4.2 Specialist assessment and imaging"),
            (
                "p",
                "The specialist should consider MRI, including diffusion-weighted imaging, on "
                "the same day as the assessment, to confirm the vascular territory or to "
                "exclude other pathology. Arrange urgent carotid duplex imaging for anyone who "
                "could have carotid surgery. Offer carotid endarterectomy within 7 days of "
                "symptom onset to people with 50-99% symptomatic carotid stenosis (NASCET "
                "criteria).",
            ),
            ("h2", "4.3 Antiplatelet treatment after TIA"),
            (
                "p",
                "Once TIA has been confirmed by the specialist, give clopidogrel (300 mg "
                "loading dose, then 75 mg once daily) plus aspirin 75 mg once daily for 21 "
                "days, followed by clopidogrel 75 mg once daily alone, unless the person needs "
                "anticoagulation (see section 5.1).",
            ),
            ("h2", "4.4 Driving"),
            (
                "p",
                "Group 1 (car and motorcycle) drivers must not drive for 1 month after a TIA "
                "or stroke. They may resume driving after 1 month if the clinical recovery is "
                "satisfactory; they do not need to notify the DVLA after a single TIA unless "
                "there are residual deficits. Group 2 drivers must stop driving and notify the "
                "DVLA.",
            ),
        ],
        [
            ("h1", "5. Secondary prevention"),
            ("h2", "5.1 Atrial fibrillation"),
            (
                "bullets",
                [
                    "People with atrial fibrillation (AF) and TIA: start anticoagulation as soon "
                    "as intracranial haemorrhage has been excluded.",
                    "People with AF and a disabling ischaemic stroke: give aspirin 300 mg daily "
                    "for 2 weeks, then start anticoagulation.",
                    "Choice and dose of anticoagulant are set out in the Northbridge anticoagulation "
                    "for atrial fibrillation guideline.",
                ],
            ),
            ("h2", "5.2 Blood pressure"),
            (
                "p",
                "After stroke or TIA, aim for a clinic systolic BP below 130 mmHg. This is "
                "lower than the general target in the Northbridge hypertension guideline. Do "
                "not aim for this lower target in people with severe bilateral carotid artery "
                "stenosis; aim for a systolic BP of 140 to 150 mmHg instead.",
            ),
            ("h2", "5.3 Lipids"),
            (
                "p",
                "Offer atorvastatin 80 mg once daily to people with ischaemic stroke or TIA, "
                "starting no sooner than 48 hours after stroke onset. Use a lower dose if "
                "there are drug interactions or a high risk of adverse effects. Aim for a "
                "reduction in non-HDL cholesterol of more than 40%.",
            ),
            ("h2", "5.4 Follow-up"),
            (
                "p",
                "Review people at 6 months and at 1 year after stroke, covering mood (see the "
                "Northbridge depression screening guideline), cognition, function, secondary "
                "prevention and return to work. Give advice on smoking cessation, alcohol and "
                "physical activity.",
            ),
        ],
    ],
}

# ---------------------------------------------------------------------------
# 7. Sepsis (DOCX)
# ---------------------------------------------------------------------------
SEPSIS: dict[str, Any] = {
    "file": "sepsis.docx",
    "title": "Sepsis in Adults: Recognition and Initial Management",
    "version": "3.0",
    "effective_date": "2024-10-01",
    "specialty": "Acute medicine",
    "blocks": [
        ("h1", "1. Scope"),
        (
            "p",
            "This guideline covers the recognition and initial management of suspected "
            "sepsis in non-pregnant adults aged 16 years and over in the emergency department "
            "and on adult inpatient wards. It does not cover sepsis in pregnancy or in "
            "children; febrile children under 5 are covered by the Northbridge paediatric "
            "fever guideline.",
        ),
        ("h1", "2. Assessment"),
        (
            "p",
            "Think sepsis in any adult with signs or symptoms of infection who looks unwell or "
            "has an abnormal NEWS2 score. Take a history from the person and from relatives or "
            "carers, and look for a source of infection.",
        ),
        ("h2", "2.1 NEWS2 scoring"),
        (
            "p",
            "Score each physiological parameter using the table below and add the scores to "
            "obtain the aggregate NEWS2 score. Use SpO2 Scale 1 unless the person has "
            "confirmed hypercapnic respiratory failure.",
        ),
        (
            "table",
            {
                "header": ["Parameter", "Score 0", "Score 1", "Score 2", "Score 3"],
                "rows": [
                    ["Respiration rate (breaths/min)", "12-20", "9-11", "21-24", "8 or less; 25 or more"],
                    ["SpO2 Scale 1 (%)", "96 or more", "94-95", "92-93", "91 or less"],
                    ["Air or oxygen", "Air", "-", "Oxygen", "-"],
                    ["Systolic BP (mmHg)", "111-219", "101-110", "91-100", "90 or less; 220 or more"],
                    ["Pulse (beats/min)", "51-90", "41-50; 91-110", "111-130", "40 or less; 131 or more"],
                    [
                        "Consciousness",
                        "Alert",
                        "-",
                        "-",
                        "New confusion, or responds only to voice or pain, or unresponsive",
                    ],
                    ["Temperature (°C)", "36.1-38.0", "35.1-36.0; 38.1-39.0", "39.1 or more", "35.0 or less"],
                ],
            },
        ),
        ("h2", "2.2 NEWS2 response thresholds"),
        (
            "bullets",
            [
                "Aggregate score 0: routine monitoring, observations at least every 12 hours.",
                "Aggregate score 1-4: the registered nurse assesses the person and decides whether "
                "to increase observations to at least every 4 to 6 hours.",
                "A score of 3 in any single parameter: urgent review by a ward-based doctor.",
                "Aggregate score 5-6: urgent response; review by a clinician competent in acute "
                "illness within 1 hour, and screen for sepsis. Observations at least every hour.",
                "Aggregate score 7 or more: emergency response; immediate review by a team with "
                "critical care competencies and continuous monitoring of vital signs.",
            ],
        ),
        ("h2", "2.3 Red flags: sepsis risk criteria"),
        (
            "p",
            "Any one high-risk criterion in a person with suspected infection means high risk "
            "of severe illness or death from sepsis.",
        ),
        (
            "table",
            {
                "header": ["Domain", "High risk (any one)", "Moderate-to-high risk (any one)"],
                "rows": [
                    [
                        "Mental state",
                        "New altered mental state or new confusion",
                        "History of new altered behaviour or mental state reported by a relative or carer",
                    ],
                    [
                        "Respiratory",
                        "Respiratory rate 25 breaths/min or more, or new need for 40% "
                        "oxygen or more to keep SpO2 above 92%",
                        "Respiratory rate 21-24 breaths/min",
                    ],
                    [
                        "Circulation",
                        "Heart rate above 130 beats/min; systolic BP 90 mmHg or less, or "
                        "more than 40 mmHg below normal",
                        "Heart rate 91-130 beats/min or new arrhythmia; systolic BP 91-100 mmHg",
                    ],
                    [
                        "Renal",
                        "Not passed urine in the previous 18 hours, or urine output below "
                        "0.5 mL/kg/hour if catheterised",
                        "Not passed urine for 12-18 hours",
                    ],
                    [
                        "Skin",
                        "Mottled or ashen appearance, cyanosis, or non-blanching rash",
                        "Signs of wound, device or skin infection",
                    ],
                    ["Other", "-", "Temperature below 36°C; impaired immunity; trauma or surgery in the past 6 weeks"],
                ],
            },
        ),
        ("h1", "3. Initial management"),
        ("h2", "3.1 High risk: the Sepsis Six within 1 hour"),
        (
            "p",
            "For anyone meeting a high-risk criterion, arrange immediate review by a senior "
            "clinician (registrar grade or above) and complete the following within 1 hour:",
        ),
        (
            "bullets",
            [
                "Give oxygen if needed to maintain SpO2 at 94-98% (88-92% if at risk of hypercapnic "
                "respiratory failure).",
                "Take blood cultures before giving antibiotics, but do not delay antibiotics to obtain them.",
                "Give IV broad-spectrum antibiotics within 1 hour, according to local antimicrobial "
                "guidance and the likely source.",
                "Measure venous lactate, and send full blood count, urea and electrolytes, "
                "C-reactive protein and clotting screen.",
                "Start IV fluid resuscitation guided by lactate and blood pressure (section 3.2).",
                "Monitor urine output hourly; consider a urinary catheter.",
            ],
        ),
        ("h2", "3.2 Lactate and fluid resuscitation"),
        (
            "bullets",
            [
                "Lactate above 4 mmol/L, or systolic BP below 90 mmHg: give a 500 mL crystalloid "
                "bolus over less than 15 minutes and refer to critical care immediately.",
                "Lactate 2-4 mmol/L: give a 500 mL crystalloid bolus over less than 15 minutes and "
                "repeat the lactate within 1 hour.",
                "Lactate below 2 mmol/L: give IV fluids according to clinical assessment.",
                "Reassess after every bolus. Use a balanced crystalloid or 0.9% sodium chloride; do "
                "not use starch solutions.",
            ],
        ),
        ("h2", "3.3 Moderate-to-high risk"),
        (
            "p",
            "For anyone meeting two or more moderate-to-high risk criteria, arrange review by "
            "a clinician within 1 hour and send blood tests including lactate. Treat as high "
            "risk if lactate is 2 mmol/L or more or there is evidence of acute kidney injury. "
            "Otherwise, if infection is likely, give antibiotics within 3 hours of the "
            "decision.",
        ),
        ("h2", "3.4 Low risk"),
        (
            "p",
            "People with no high or moderate-to-high risk criteria can be managed according to "
            "clinical judgement, with clear safety-netting advice and a plan for review.",
        ),
        ("h1", "4. Escalation and ongoing care"),
        ("h2", "4.1 Critical care referral"),
        (
            "p",
            "Refer to critical care and inform the consultant if any of the following apply: "
            "systolic BP remains below 90 mmHg after 2 fluid boluses (1000 mL); lactate "
            "remains above 4 mmol/L after fluid resuscitation; NEWS2 aggregate score of 7 or "
            "more; reduced level of consciousness; respiratory failure; or need for "
            "vasopressors.",
        ),
        ("h2", "4.2 Source control and antibiotic review"),
        (
            "p",
            "Identify the source of infection and achieve source control (for example "
            "drainage of an abscess or removal of an infected device) within 6 hours of "
            "diagnosis where possible. Review antibiotics at 48 hours with microbiology "
            "results, narrow the spectrum where possible and switch from IV to oral treatment "
            "when the person is improving. For pneumonia, see the Northbridge "
            "community-acquired pneumonia guideline.",
        ),
    ],
}

# ---------------------------------------------------------------------------
# 10. Anticoagulation for atrial fibrillation (DOCX)
# ---------------------------------------------------------------------------
AF_ANTICOAG: dict[str, Any] = {
    "file": "af_anticoagulation.docx",
    "title": "Anticoagulation for Stroke Prevention in Atrial Fibrillation",
    "version": "2.3",
    "effective_date": "2024-06-01",
    "specialty": "Cardiology",
    "blocks": [
        ("h1", "1. Scope"),
        (
            "p",
            "This guideline covers assessment of stroke and bleeding risk and the choice, dose "
            "and monitoring of anticoagulants for adults aged 18 years and over with "
            "non-valvular atrial fibrillation (AF) or atrial flutter, whether paroxysmal, "
            "persistent or permanent. People with mechanical heart valves or moderate to "
            "severe mitral stenosis need warfarin and are outside the scope of section 3.2.",
        ),
        ("h1", "2. Assessment"),
        ("h2", "2.1 Stroke risk: CHA2DS2-VASc"),
        (
            "p",
            "Assess stroke risk with the CHA2DS2-VASc score in every person with AF, "
            "including paroxysmal AF. The maximum score is 9.",
        ),
        (
            "table",
            {
                "header": ["Risk factor", "Points"],
                "rows": [
                    ["Congestive heart failure or left ventricular dysfunction", "1"],
                    ["Hypertension", "1"],
                    ["Age 75 years or over", "2"],
                    ["Diabetes mellitus", "1"],
                    ["Previous stroke, TIA or thromboembolism", "2"],
                    [
                        "Vascular disease (previous myocardial infarction, peripheral arterial disease or aortic plaque)",
                        "1",
                    ],
                    ["Age 65 to 74 years", "1"],
                    ["Sex category: female", "1"],
                ],
            },
        ),
        ("h2", "2.2 Bleeding risk: ORBIT"),
        (
            "p",
            "Assess bleeding risk with the ORBIT score before starting anticoagulation and at "
            "each review. A score of 0-2 is low risk, 3 is medium risk and 4-7 is high risk. "
            "Do not withhold anticoagulation solely because of bleeding risk; instead address "
            "modifiable risk factors such as uncontrolled hypertension, harmful alcohol use, "
            "and concurrent antiplatelet or NSAID use.",
        ),
        (
            "table",
            {
                "header": ["ORBIT factor", "Points"],
                "rows": [
                    ["Older age (75 years or over)", "1"],
                    ["Reduced haemoglobin (below 130 g/L in men or below 120 g/L in women) or history of anaemia", "2"],
                    ["Bleeding history", "2"],
                    ["Insufficient kidney function (eGFR below 60 mL/min/1.73 m2)", "1"],
                    ["Treatment with an antiplatelet drug", "1"],
                ],
            },
        ),
        ("h2", "2.3 Baseline investigations"),
        (
            "p",
            "Before starting an anticoagulant, check full blood count, urea and electrolytes, "
            "liver function tests, coagulation screen and body weight, and calculate "
            "creatinine clearance (CrCl) with the Cockcroft-Gault formula using actual body "
            "weight.",
        ),
        ("h1", "3. Anticoagulation"),
        ("h2", "3.1 When to offer anticoagulation"),
        (
            "bullets",
            [
                "Offer anticoagulation to people with a CHA2DS2-VASc score of 2 or more.",
                "Consider anticoagulation for men with a CHA2DS2-VASc score of 1.",
                "Do not offer anticoagulation to men with a score of 0 or to women whose only "
                "risk factor is female sex (score of 1).",
                "Offer a direct oral anticoagulant (DOAC) first line: apixaban, dabigatran, edoxaban or rivaroxaban.",
                "Do not offer aspirin monotherapy solely for stroke prevention in AF.",
            ],
        ),
        ("h2", "3.2 DOAC choice and dose"),
        ("p", "Use the dose that matches the licensed criteria below. Do not use a DOAC if CrCl is below 15 mL/min."),
        (
            "table",
            {
                "header": ["Drug", "Standard dose", "Reduced dose", "Criteria for reduced dose"],
                "rows": [
                    [
                        "Apixaban",
                        "5 mg twice daily",
                        "2.5 mg twice daily",
                        "Any 2 of: age 80 years or over, body weight 60 kg or less, serum creatinine "
                        "133 micromol/L or more; or CrCl 15-29 mL/min",
                    ],
                    ["Rivaroxaban", "20 mg once daily with the evening meal", "15 mg once daily", "CrCl 15-49 mL/min"],
                    [
                        "Edoxaban",
                        "60 mg once daily",
                        "30 mg once daily",
                        "CrCl 15-50 mL/min, body weight 60 kg or less, or use of certain P-glycoprotein inhibitors",
                    ],
                    [
                        "Dabigatran",
                        "150 mg twice daily",
                        "110 mg twice daily",
                        "Age 80 years or over, or concurrent verapamil; consider at age 75-80 with high "
                        "bleeding risk. Avoid if CrCl below 30 mL/min",
                    ],
                ],
            },
        ),
        ("h2", "3.3 Warfarin"),
        (
            "p",
            "If a DOAC is contraindicated or not tolerated, offer warfarin with a target INR of "
            "2.5 (range 2.0 to 3.0). Calculate the time in therapeutic range (TTR) at each "
            "visit; reassess anticoagulation if TTR is below 65%, or if there have been 2 INR "
            "values above 5 or 1 INR value above 8 in the past 6 months. When switching from "
            "warfarin to a DOAC, start apixaban or dabigatran when the INR is below 2.0.",
        ),
        ("h1", "4. Monitoring and special situations"),
        ("h2", "4.1 Monitoring"),
        (
            "p",
            "Review every person on an anticoagulant at least once a year, checking adherence, "
            "bleeding, side effects, body weight, full blood count, liver function and renal "
            "function. If CrCl is below 60 mL/min, check renal function more often: in months, "
            "the interval is CrCl divided by 10 (for example every 4 months if CrCl is 40 "
            "mL/min). Recalculate the dose whenever CrCl or weight changes.",
        ),
        ("h2", "4.2 After stroke or TIA"),
        (
            "p",
            "After a TIA, start anticoagulation as soon as intracranial haemorrhage has been "
            "excluded. After a disabling ischaemic stroke, give aspirin 300 mg daily for 2 "
            "weeks and then start anticoagulation, as in the Northbridge stroke and TIA "
            "guideline.",
        ),
        ("h2", "4.3 Bleeding and surgery"),
        (
            "p",
            "For major bleeding, stop the anticoagulant, resuscitate and seek urgent "
            "haematology advice. Idarucizumab reverses dabigatran; andexanet alfa may be used "
            "for apixaban or rivaroxaban under specialist advice. Plan interruption before "
            "surgery or procedures using the local perioperative anticoagulation protocol; "
            "bridging with heparin is not needed for DOACs.",
        ),
        ("h2", "4.4 Referral"),
        (
            "p",
            "Refer to the cardiology AF clinic within 4 weeks if rate control fails to control "
            "symptoms, if rhythm control is being considered, or if there is uncertainty about "
            "anticoagulation. Refer urgently if there is haemodynamic instability.",
        ),
    ],
}

PDF_DOCS = [CHEST_PAIN, STROKE_TIA]
DOCX_DOCS = [SEPSIS, AF_ANTICOAG]


def keywords(doc: dict[str, Any]) -> str:
    return (
        f"issuer={ISSUER}; version={doc['version']}; "
        f"effective_date={doc['effective_date']}; specialty={doc['specialty']}"
    )


def meta_line(doc: dict[str, Any]) -> str:
    return (
        f"Issuer: {ISSUER} | Version: {doc['version']} | "
        f"Effective date: {doc['effective_date']} | Specialty: {doc['specialty']}"
    )


# ---------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------
class GuidelinePDF(FPDF):
    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc = doc
        self.set_margins(20, 20, 20)
        self.set_auto_page_break(auto=True, margin=20)

    def header(self) -> None:
        self.set_font("Helvetica", "B", 8)
        self.set_text_color(160, 0, 0)
        self.cell(0, 5, DEMO_NOTICE, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "", 8)
        self.cell(
            0,
            5,
            f"{ISSUER} - {self.doc['file']} v{self.doc['version']} - Page {self.page_no()} of {{nb}}",
            align="C",
        )


def _check_latin1(text: str, where: str) -> None:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:  # pragma: no cover - guard for content edits
        raise SystemExit(f"non latin-1 character in PDF text ({where}): {text!r}") from exc


def build_pdf(doc: dict[str, Any], out: Path) -> int:
    pdf = GuidelinePDF(doc)
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(doc["title"])
    pdf.set_author(ISSUER)
    pdf.set_subject(doc["specialty"])
    pdf.set_keywords(keywords(doc))
    pdf.set_creator("scripts/make_demo_corpus.py")
    pdf.set_lang("en-GB")

    for page_no, blocks in enumerate(doc["pages"], start=1):
        pdf.add_page()
        if page_no == 1:
            pdf.set_font("Helvetica", "B", 15)
            pdf.multi_cell(0, 7, doc["title"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
            pdf.set_font("Helvetica", "", 9)
            pdf.multi_cell(0, 4.5, meta_line(doc), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font("Helvetica", "I", 9)
            pdf.multi_cell(0, 4.5, f"{DEMO_NOTICE}. {DEMO_NOTICE_LONG}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(3)
        for kind, payload in blocks:
            if kind == "h1":
                _check_latin1(payload, doc["file"])
                pdf.ln(2)
                pdf.set_font("Helvetica", "B", 13)
                pdf.multi_cell(0, 7, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            elif kind == "h2":
                _check_latin1(payload, doc["file"])
                pdf.ln(1)
                pdf.set_font("Helvetica", "B", 11)
                pdf.multi_cell(0, 6, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            elif kind == "p":
                _check_latin1(payload, doc["file"])
                pdf.set_font("Helvetica", "", 10)
                pdf.multi_cell(0, 5, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(1.5)
            elif kind == "bullets":
                pdf.set_font("Helvetica", "", 10)
                for item in payload:
                    _check_latin1(item, doc["file"])
                    pdf.set_x(pdf.l_margin + 2)
                    pdf.cell(4, 5, "-")
                    pdf.multi_cell(0, 5, item, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                    pdf.ln(0.8)
                pdf.ln(1)
            else:
                raise ValueError(f"unsupported PDF block {kind!r}")
        if pdf.page_no() != page_no:
            raise SystemExit(f"{doc['file']}: content for page {page_no} overflowed onto another page")
    pdf.output(str(out))
    return pdf.page_no()


# ---------------------------------------------------------------------------
# DOCX
# ---------------------------------------------------------------------------
def _normalise_zip(path: Path) -> None:
    """Rewrite the DOCX zip with fixed timestamps so output bytes are stable."""
    src = path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            new = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            new.compress_type = zipfile.ZIP_DEFLATED
            new.external_attr = 0o644 << 16
            zout.writestr(new, data)
    path.write_bytes(buf.getvalue())


def build_docx(doc: dict[str, Any], out: Path) -> int:
    d = Document()
    d.styles["Normal"].font.name = "Calibri"
    d.styles["Normal"].font.size = Pt(11)

    notice = d.add_paragraph()
    run = notice.add_run(f"{DEMO_NOTICE}. ")
    run.bold = True
    notice.add_run(DEMO_NOTICE_LONG)
    d.add_heading(doc["title"], level=0)
    d.add_paragraph(meta_line(doc))

    n_tables = 0
    for kind, payload in doc["blocks"]:
        if kind == "h1":
            d.add_heading(payload, level=1)
        elif kind == "h2":
            d.add_heading(payload, level=2)
        elif kind == "p":
            d.add_paragraph(payload)
        elif kind == "bullets":
            for item in payload:
                d.add_paragraph(item, style="List Bullet")
        elif kind == "table":
            header, rows = payload["header"], payload["rows"]
            table = d.add_table(rows=1 + len(rows), cols=len(header))
            table.style = "Table Grid"
            for i, text in enumerate(header):
                cell = table.rows[0].cells[i]
                cell.text = ""
                cell.paragraphs[0].add_run(text).bold = True
            for r, row in enumerate(rows, start=1):
                for c, text in enumerate(row):
                    table.rows[r].cells[c].text = text
            n_tables += 1
            d.add_paragraph()
        else:
            raise ValueError(f"unsupported DOCX block {kind!r}")

    cp = d.core_properties
    cp.title = doc["title"]
    cp.author = ISSUER
    cp.last_modified_by = ISSUER
    cp.subject = doc["specialty"]
    cp.version = doc["version"]
    cp.keywords = keywords(doc)
    cp.category = "Clinical guideline (demo)"
    cp.comments = f"{DEMO_NOTICE}. {DEMO_NOTICE_LONG}"
    cp.revision = 1
    fixed_naive = FIXED_TIME.replace(tzinfo=None)
    cp.created = fixed_naive
    cp.modified = fixed_naive
    cp.last_printed = fixed_naive
    d.save(str(out))
    _normalise_zip(out)
    return n_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for doc in PDF_DOCS:
        pages = build_pdf(doc, args.out / doc["file"])
        print(f"wrote {doc['file']} ({pages} pages)")
    for doc in DOCX_DOCS:
        tables = build_docx(doc, args.out / doc["file"])
        print(f"wrote {doc['file']} ({tables} tables)")


if __name__ == "__main__":
    main()

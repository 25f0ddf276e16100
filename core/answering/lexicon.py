"""The words of clinical claims: stems, stop and generic words, drugs, routes, populations, negation and order."""

from __future__ import annotations

import re

_STOP = frozenset(
    """a an the and or but if then than of to in on at by for with from as is are was were be been being it its
    this that these those there their they them he she his her we you your our i me my do does did done has have
    had having will would should shall can could may might must not no nor never so such any all each every some
    also only which who whom whose what when where while how why into onto up down out over under about after
    before during until within without between above below per via etc more most less least other same both either
    neither very just too whether because since unless although however thus therefore again here s x e g eg ie
    non pre post co vs approx like well even still yet already once through across around along towards upon
    against beyond off away back instead""".split()
)
# Words that say little on their own: they count for less, and a sentence made only of them is too vague.
_GENERIC = frozenset(
    """patient give offer consider use treat treatment manage management dose start continue assess assessment
    review check recommend recommended advise advice need needed require required ensure provide care clinical
    clinically clinician doctor team guideline guidance condition case time usual usually appropriate important
    help support follow arrange take make see include according based local service setting option first initial
    additional drug medicine medication therapy level result example may can should new good early aim feature
    indicate indicates mean means suggest suggests""".split()
)
# A sentence made only of these (and no numbers) makes no clinical claim: "Check the full guideline."
_NO_CLAIM = frozenset(
    """check full guideline guidelines guidance local policy protocol see section source sources passage passages
    reference information detail details further consult read document summary answer question context provided
    provide based following note help hope please additional specific relevant latest current version medical
    advice substitute clinical judgement judgment professional disclaimer always carefully text excerpt list cite
    citation""".split()
)
_ROUTES = frozenset({"im", "iv", "sc", "oral", "nebulised", "sublingual", "rectal", "buccal", "inhaled", "intranasal"})
# Groups for whom doses and thresholds differ: a claim about them needs a passage about them.
_POPULATIONS = frozenset(
    "child children paediatric pediatric infant infants neonate neonates newborn baby babies pregnant pregnancy "
    "breastfeeding".split()
)
# Common drug names and classes; the suffix pattern below catches most others.
_DRUGS = frozenset(
    """adrenaline noradrenaline dopamine dobutamine atropine amiodarone adenosine digoxin verapamil diltiazem
    bisoprolol atenolol propranolol metoprolol labetalol carvedilol sotalol ramipril lisinopril enalapril
    perindopril losartan candesartan valsartan irbesartan amlodipine nifedipine felodipine indapamide
    bendroflumethiazide furosemide bumetanide spironolactone eplerenone doxazosin hydralazine gtn isosorbide
    nicorandil ivabradine aspirin clopidogrel ticagrelor prasugrel dipyridamole warfarin apixaban rivaroxaban
    edoxaban dabigatran heparin enoxaparin dalteparin tinzaparin fondaparinux alteplase tenecteplase atorvastatin
    simvastatin rosuvastatin pravastatin ezetimibe metformin gliclazide glimepiride sitagliptin linagliptin
    alogliptin pioglitazone empagliflozin dapagliflozin canagliflozin liraglutide semaglutide dulaglutide exenatide
    insulin glucagon levothyroxine carbimazole hydrocortisone prednisolone prednisone dexamethasone
    methylprednisolone fludrocortisone beclometasone budesonide fluticasone salbutamol terbutaline ipratropium
    tiotropium salmeterol formoterol montelukast theophylline aminophylline magnesium amoxicillin ampicillin
    flucloxacillin benzylpenicillin phenoxymethylpenicillin penicillin amoxiclav piperacillin tazobactam
    cefalexin cefuroxime ceftriaxone cefotaxime ceftazidime meropenem gentamicin amikacin vancomycin teicoplanin
    clarithromycin erythromycin azithromycin doxycycline tetracycline trimethoprim nitrofurantoin ciprofloxacin
    levofloxacin metronidazole clindamycin rifampicin linezolid fluconazole aciclovir oseltamivir paracetamol
    ibuprofen naproxen diclofenac codeine morphine oxycodone tramadol fentanyl naloxone ondansetron metoclopramide
    cyclizine prochlorperazine omeprazole lansoprazole sertraline citalopram escitalopram fluoxetine paroxetine
    mirtazapine venlafaxine duloxetine amitriptyline lithium diazepam lorazepam midazolam chlordiazepoxide
    haloperidol olanzapine quetiapine risperidone levetiracetam phenytoin valproate lamotrigine carbamazepine
    thiamine pabrinex acetylcysteine chlorphenamine cetirizine loratadine fexofenadine promethazine colchicine
    allopurinol febuxostat gluconate resonium mannitol tranexamic glargine detemir degludec aspart lispro
    glulisine isophane ferrous phytomenadione idarucizumab andexanet prothrombin lidocaine ketamine phenobarbital
    sumatriptan mesalazine methotrexate hydroxychloroquine finasteride tamsulosin oxybutynin
    antibiotic antihistamine corticosteroid steroid antidepressant antipsychotic anticoagulant antiplatelet
    antiemetic antipyretic analgesic bronchodilator benzodiazepine opioid statin diuretic nsaid ssri snri ace arb
    ccb ppi lmwh doac alpha beta thrombolytic crystalloid colloid antiepileptic anticonvulsant sulfonylurea
    antimicrobial antifungal antiviral laxative""".split()
)
_DRUG_SUFFIX = re.compile(
    r"(?:cillin|mycin|micin|floxacin|cycline|pril|sartan|olol|dipine|statin|prazole|azole|parin|xaban|gatran|"
    r"gliflozin|gliptin|glutide|zepam|zolam|oxetine|triptan|profen|tropium|lukast|phylline|codone|thiazide|"
    r"semide|tidine|setron|olone|asone|isone|ortisone|tinib|ciclovir|navir|dronate|teplase|peridol|apine|mab|caine)$"
)
_IRREGULAR = {"taken": "take", "took": "take", "shown": "show", "seen": "see", "chosen": "choose", "written": "write"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_PREFIX = 8  # stems sharing this many first letters match ("anaphylactic" ~ "anaphylaxis")
_NEGATION = re.compile(r"\b(?:not|no|never|none|without|avoid\w*|contraindicat\w*|cannot|nor|neither)\b")
# Cues whose negated words may come before them ("X is not available", "X should be avoided").
_NEGATES_BEFORE = re.compile(r"not|never|cannot|avoided|contraindicat\w*")
_NOT_NEGATION = re.compile(r"\b(?:no|not) (?:more|less|later|earlier|sooner|fewer) than\b|\bnot exceeding\b|\bor not\b")
_POLAR = re.compile(r"\b(?:no|not|never|yes)\b")
_ORDER = re.compile(r"\b(before|after)\b")


def _stem(word: str) -> str:
    """Light, consistent stemming: plural, -ed, -ing, -ly and British/American spellings."""
    w = _IRREGULAR.get(word, word)
    w = w.replace("ae", "e").replace("oe", "e").replace("isat", "izat")
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ing") and len(w) > 5:
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) > 3 and not w.endswith("eed"):
        w = _undouble(w[:-2])
    elif w.endswith("s") and len(w) > 3 and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("ly") and len(w) > 6:
        w = w[:-2]
    if w.endswith("is") and len(w) > 5:
        w = w[:-2] + "iz"
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def _undouble(w: str) -> str:
    return w[:-1] if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz" else w


def _is_key_term(word: str) -> bool:
    singular = word.removesuffix("s")
    return (
        word in _ROUTES
        or word in _POPULATIONS
        or _stem(word) in _DRUG_STEMS
        or (len(word) >= 6 and bool(_DRUG_SUFFIX.search(word) or _DRUG_SUFFIX.search(singular)))
    )


def _is_drug(word: str) -> bool:
    return _is_key_term(word) and word not in _ROUTES and word not in _POPULATIONS


_GENERIC_STEMS = frozenset(_stem(w) for w in _GENERIC)
_DRUG_STEMS = frozenset(_stem(w) for w in _DRUGS)
_NO_CLAIM_STEMS = frozenset(_stem(w) for w in _NO_CLAIM)
_OPPOSITES: dict[str, frozenset[str]] = {
    _stem(word): frozenset(_stem(o) for o in opposites.split())
    for word, opposites in {
        "continue": "stop pause withhold omit discontinue",
        "stop": "continue start",
        "pause": "continue",
        "withhold": "give continue offer",
        "omit": "give continue",
        "start": "stop",
        "increase": "reduce decrease",
        "reduce": "increase",
        "decrease": "increase",
        "give": "withhold omit",
        "offer": "withhold",
        "higher": "reduce",
    }.items()
}


def _weight(stem: str) -> float:
    return 0.3 if stem in _GENERIC_STEMS else 1.0

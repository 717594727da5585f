import csv
import json
import re
from collections import Counter

import pytest
from conftest import SHARED_DATA, shared_path

from asrkit.text import _SPOKEN_WORDS, BLANK_ID, DEFAULT_ALPHABET, CharTokenizer, normalize_text

EXAMPLES = [
    # case, punctuation and whitespace
    ("Author of the danger trail, Philip Steels, etc.", "author of the danger trail philip steels etc"),
    ("  Hello,\tWORLD!\n\n", "hello world"),
    ("I was sick once -- typhoid.", "i was sick once typhoid"),
    ("Dig in; you're sure good.", "dig in you're sure good"),
    ("well-known, re-entered; No-sir-ee.", "well known re entered no sir ee"),
    ("U.S.A. (roughly) [sic] {x} <y> / a:b", "u s a roughly sic x y a b"),
    ("", ""),
    ("?!...", ""),
    # apostrophes and quotes
    ("God bless 'em, I hope I'll go", "god bless em i hope i'll go"),
    ("I\u2019m sure it\u2019s Daylight\u2019s", "i'm sure it's daylight's"),
    ("the dogs' bones", "the dogs bones"),
    ("\u2018quoted\u2019 and \u201cdouble\u201d and 'single'", "quoted and double and single"),
    ("O'Brien said rock 'n' roll", "o'brien said rock n roll"),
    ("don`t won\u00b4t can\u02bct I\uff07m", "don't won't can't i'm"),
    ("a '' b ' c", "a b c"),
    # Unicode
    ("Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m", "cafe naive resume angstrom"),
    ("Stra\u00dfe \u00c6sop \u00d8resund", "strasse aesop oresund"),
    ("\ufb01ne \uff21\uff22\uff23", "fine abc"),  # ligature and fullwidth letters (NFKC)
    ("\u0130stanbul", "istanbul"),
    ("na\u0308ive", "naive"),  # combining diaeresis
    ("\u4f60\u597d world", "world"),
    # numbers
    ("0 7 13 20 42 99", "zero seven thirteen twenty forty two ninety nine"),
    ("100 101 110 999", "one hundred one hundred one one hundred ten nine hundred ninety nine"),
    ("1,000 and 1000", "one thousand and one thousand"),
    ("2,500,017", "two million five hundred thousand seventeen"),
    (
        "999,999,999",
        "nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine",
    ),
    ("1,000,000,000 and 3000000000000", "one billion and three trillion"),
    ("1,2,3", "one two three"),
    ("007", "zero zero seven"),
    ("3.5 and 0.25 and 10.0", "three point five and zero point two five and ten point zero"),
    ("It cost 5. Then 6.", "it cost five then six"),
    ("1st 2nd 3rd 4th 5th 8th 9th 12th", "first second third fourth fifth eighth ninth twelfth"),
    ("11th 20th 21st 33rd 100th", "eleventh twentieth twenty first thirty third one hundredth"),
    ("1,000,000th", "one millionth"),
    ("the '90s and 6s", "the nineties and sixes"),
    ("5km mp3 A4", "five km mp three a four"),
    ("50% off", "fifty percent off"),
    ("\uff15\uff10\uff05", "fifty percent"),  # fullwidth digits and percent (NFKC)
    ("R&D and Tom & Jerry", "r and d and tom and jerry"),
    ("-5 to +5", "five to five"),
    # decades, and four-digit numbers up to 1999 without a comma, are said as years
    ("the 1960s and 1900s", "the nineteen sixties and nineteen hundreds"),
    ("the 2000s and 2010s", "the two thousands and twenty tens"),
    ("March 18, 1908", "march eighteen nineteen oh eight"),
    ("Out of his 1800, he laid aside 1600", "out of his eighteen hundred he laid aside sixteen hundred"),
    ("1100 1880 1999", "eleven hundred eighteen eighty nineteen ninety nine"),
    ("1099 2000 2024", "one thousand ninety nine two thousand two thousand twenty four"),
    ("1,960 and 1,960s", "one thousand nine hundred sixty and one thousand nine hundred sixties"),
    ("1908th and 1800.5", "one thousand nine hundred eighth and one thousand eight hundred point five"),
    # "and" inside a spelled number goes, as it never appears in one spelled from digits
    ("one hundred and forty miles, 140 miles", "one hundred forty miles one hundred forty miles"),
    ("a thousand and one nights, a hundred and first", "a thousand one nights a hundred first"),
    ("two hundred and tenants, bread and butter", "two hundred and tenants bread and butter"),
    ("two hundred and five hundred", "two hundred and five hundred"),  # two numbers
    ("two hundred and fifty thousand", "two hundred and fifty thousand"),  # ambiguous, so left
    # money: the unit follows the amount, minor units are spoken separately
    ("$5 and $1", "five dollars and one dollar"),
    ("$5.50, $1.01 and $0.50", "five dollars fifty cents one dollar one cent and fifty cents"),
    ("$5.00 or $ 20", "five dollars or twenty dollars"),
    ("$1,000 and $5.5", "one thousand dollars and five point five dollars"),
    ("$5 million and $2.5 billion", "five million dollars and two point five billion dollars"),
    ("\u00a32.50, \u00a31.01 and \u20ac5", "two pounds fifty pence one pound one penny and five euros"),
    # clock times
    ("3:30 and 10:30", "three thirty and ten thirty"),
    ("3:05 and 3:00 p.m.", "three oh five and three p m"),
    ("1:30:15", "one thirty fifteen"),
    # abbreviations read as spoken, the titles as whisper's EnglishTextNormalizer reads them
    ("Mr. and Mrs. Dashwood", "mister and missus dashwood"),
    ("Dr. Jones of St. Paul's", "doctor jones of saint paul's"),
    ("Prof. Capt. Lt. Col. Gov.", "professor captain lieutenant colonel governor"),
    ("Sen. Pres. Ald. Asst. Assoc.", "senator president alderman assistant associate"),
    ("Smith Jr., Smith Sr., Smith Esq.", "smith junior smith senior smith esquire"),
    ("rep rev gen hon", "rep rev gen hon"),  # words in their own right stay
    ("mister missus doctor saint", "mister missus doctor saint"),
    ("O.K., ok, OK and okay", "okay okay okay and okay"),
    ("o.k.a. and Ok'd", "o k a and ok'd"),
    ("Smith vs. Jones", "smith versus jones"),
    ("your labour, laboured; counselled", "your labor labored counseled"),
    ("ill-disposed 10%", "ill disposed ten percent"),
]


@pytest.mark.parametrize("text, expected", EXAMPLES)
def test_normalize_text_examples(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize("text", [text for text, _ in EXAMPLES])
def test_normalize_text_is_idempotent_and_in_alphabet(text):
    normalized = normalize_text(text)
    assert normalize_text(normalized) == normalized
    assert re.fullmatch(r"([a-z']+( [a-z']+)*)?", normalized)


def _manifest_rows() -> list[tuple[str, dict[str, str]]]:
    shared_path("splits")
    manifests = sorted(SHARED_DATA.glob("splits/*.tsv")) + sorted(SHARED_DATA.glob("speech/*/manifest.tsv"))
    rows = []
    for manifest in manifests:
        with manifest.open(newline="", encoding="utf-8") as file:
            # QUOTE_NONE: transcripts contain quote marks that are text, not TSV quoting.
            reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows += [(manifest.relative_to(SHARED_DATA).as_posix(), row) for row in reader]
    return rows


@pytest.fixture(scope="module")
def manifest_rows() -> list[tuple[str, dict[str, str]]]:
    return _manifest_rows()


def test_spoken_words_are_fixed_points():
    for written, spoken in _SPOKEN_WORDS.items():
        assert normalize_text(written) == spoken
        assert normalize_text(spoken) == spoken, f"{written!r} -> {spoken!r} is not a fixed point"


# The manifests' text_norm was written before "Mr" became "mister", "Mrs" "missus", the British
# "labour" and "counselled" were spelled as Whisper writes them and "one hundred and forty" lost its
# "and"; those rows differ only in these words.
CHANGED_SINCE_MANIFESTS = {"mr", "mrs", "labour", "counselled", "and"}
ROWS_WRITTEN_BEFORE_THE_CHANGE = 35


def test_normalize_text_reproduces_every_manifest_text_norm(manifest_rows):
    assert len(manifest_rows) > 9000
    mismatches, changed = [], 0
    for name, row in manifest_rows:
        normalized = normalize_text(row["transcript"])
        if normalized == row["text_norm"]:
            continue
        # The old text_norm passes through the new normaliser to the same words, so WER is unchanged
        # whichever of the two a reference came from.
        old_words = Counter(row["text_norm"].split()) - Counter(normalized.split())
        if set(old_words) <= CHANGED_SINCE_MANIFESTS and normalize_text(row["text_norm"]) == normalized:
            changed += 1
        else:
            mismatches.append(f"{name}: {row['transcript']!r} gives {normalized!r}, not {row['text_norm']!r}")
    assert not mismatches, "\n".join(mismatches)
    assert changed == ROWS_WRITTEN_BEFORE_THE_CHANGE


def test_tokenizer_round_trips_real_transcripts(manifest_rows):
    tokenizer = CharTokenizer()
    for _, row in manifest_rows:
        ids = tokenizer.encode(row["text_norm"])
        assert BLANK_ID not in ids
        assert tokenizer.decode(ids) == row["text_norm"]


def test_tokenizer_layout():
    tokenizer = CharTokenizer()
    assert tokenizer.alphabet == DEFAULT_ALPHABET
    assert tokenizer.vocab_size == 29
    assert tokenizer.encode(" 'az") == [1, 2, 3, 28]
    assert tokenizer.decode([0, 9, 0, 0, 10, 10, 0]) == "ghh"


def test_tokenizer_errors_name_the_problem():
    tokenizer = CharTokenizer()
    with pytest.raises(ValueError, match=r"'H' at position 0"):
        tokenizer.encode("Hello")
    with pytest.raises(ValueError, match=r"'!' at position 2"):
        tokenizer.encode("hi!")
    with pytest.raises(ValueError, match="id 29 is outside"):
        tokenizer.decode([1, 29])
    with pytest.raises(ValueError, match="repeats"):
        CharTokenizer("abca")


def test_tokenizer_serialises_and_compares():
    custom = CharTokenizer("abc ")
    assert CharTokenizer.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    assert CharTokenizer.from_dict(CharTokenizer().to_dict()) == CharTokenizer()
    assert custom != CharTokenizer()
    assert len({CharTokenizer(), CharTokenizer()}) == 1
    with pytest.raises(ValueError, match="unknown CharTokenizer keys: blank"):
        CharTokenizer.from_dict({"alphabet": "ab", "blank": 0})

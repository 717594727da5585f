"""Text normalisation and the character vocabulary for CTC.

`normalize_text` is the single definition of what a transcript looks like: training targets, WER
scoring and the UI all pass text through it, so a model is never penalised for writing "ten" where a
reference says "10", or "dont" against "don't".
"""

import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BLANK_ID = 0
DEFAULT_ALPHABET = " '" + string.ascii_lowercase  # ids BLANK_ID + 1 onwards, in this order

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

# Written forms and the words a reader says for them, applied to whole words at the end so that
# "Mr." and "mister" score the same. The titles follow whisper's EnglishTextNormalizer ("mrs" is
# "missus", "st" is "saint"), leaving out "rep", "rev", "gen" and "hon", which are words in their
# own right ("rev the engine"). Every value must map to itself, or the result is no fixed point.
_SPOKEN_WORDS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "st": "saint",
    "prof": "professor",
    "capt": "captain",
    "lt": "lieutenant",
    "col": "colonel",
    "gov": "governor",
    "sen": "senator",
    "pres": "president",
    "ald": "alderman",
    "asst": "assistant",
    "assoc": "associate",
    "jr": "junior",
    "sr": "senior",
    "esq": "esquire",
    "ok": "okay",
    "vs": "versus",
    # British spellings that our references use (though they write "labor" too) where Whisper writes
    # American ones; not a general table, only these two words and their forms.
    "labour": "labor",
    "labours": "labors",
    "laboured": "labored",
    "labouring": "laboring",
    "labourer": "laborer",
    "labourers": "laborers",
    "counselled": "counseled",
    "counselling": "counseling",
    "counsellor": "counselor",
    "counsellors": "counselors",
}

# Typographic apostrophes, primes and accents that people type for "'". Mapped before NFKC, which
# leaves most of them alone but would turn the acute accent into a space and a combining mark.
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u02bc`\u00b4"})
# Letters that Unicode decomposition cannot reduce to a base letter plus accents.
_UNDECOMPOSABLE = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)
# An integer, with thousands commas only where every group has three digits (so "1,2" stays a list),
# then an optional decimal part and an ordinal or plural suffix that ends the word ("5th", "90s").
_NUMBER = re.compile(
    r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)"
    r"(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<suffix>st|nd|rd|th|s)(?![a-z]))?"
)
# A currency amount, with an optional scale word: "$5", "£2.50", "$1,000", "$5.5 million".
_MONEY = re.compile(
    r"(?P<symbol>[$£€]) ?(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.(?P<fraction>[0-9]+))?"
    r"(?: (?P<scale>hundred|thousand|million|billion|trillion)(?![a-z]))?"
)
# Singular and plural of each currency's major and minor unit, in the order they are spoken.
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
# A clock time; the lookarounds leave "1:30:15" and "10:300" to be read as plain numbers.
_TIME = re.compile(r"(?<![0-9:])(?P<hour>[01]?[0-9]|2[0-4]):(?P<minute>[0-5][0-9])(?![0-9:])")
# "O.K." is one word; once punctuation went it would read as the letters "o k".
_DOTTED_OKAY = re.compile(r"(?<![a-z0-9.])o\.k(?:\.(?![a-z0-9])|(?![a-z0-9.]))")
_OUTSIDE_ALPHABET = re.compile(r"[^a-z' ]")
# Apostrophes belong to a word only between two letters ("don't", "o'brien"); quote marks and
# clipped forms ("'em", "dogs'") lose them.
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def _cardinal(number: int) -> str:
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {_cardinal(rest)}" if rest else "")
    # Beyond the largest scale the head recurses ("one thousand trillion"), so there is no upper limit.
    scale, name = next((scale, name) for scale, name in _SCALES if number >= scale)
    head, rest = divmod(number, scale)
    return f"{_cardinal(head)} {name}" + (f" {_cardinal(rest)}" if rest else "")


def _inflect_last_word(words: str, suffix: str) -> str:
    head, _, last = words.rpartition(" ")
    if suffix == "s":
        last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    else:
        last = _IRREGULAR_ORDINALS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return f"{head} {last}" if head else last


# "One hundred and forty" is said where "140" is spelled "one hundred forty" here, so an "and" goes
# when the number words after it end the number ("two thousand and five", "a hundred and first").
# One that joins two numbers stays: "one thousand and one thousand", "one billion and three trillion",
# and so does the rarer, ambiguous "two hundred and fifty thousand".
_NUMBER_WORDS = [*_ONES[1:], *_TENS[2:]]
_NUMBER_WORD = "|".join(_NUMBER_WORDS + [_inflect_last_word(word, "th") for word in _NUMBER_WORDS])
_SCALE_WORD = "hundred|thousand|million|billion|trillion"
_AND_IN_NUMBER = re.compile(
    rf"\b({_SCALE_WORD}) and (?=(?:{_NUMBER_WORD})\b(?: (?:{_NUMBER_WORD})\b)*+(?! (?:{_SCALE_WORD})\b))"
)


def _year(number: int) -> str:
    # "1908" -> "nineteen oh eight", "1880" -> "eighteen eighty", "1800" -> "eighteen hundred".
    century, year = divmod(number, 100)
    if year == 0 and century % 10 == 0:
        return _cardinal(number)  # "2000" is "two thousand", not "twenty hundred"
    if year == 0:
        return f"{_cardinal(century)} hundred"
    return f"{_cardinal(century)} " + (f"oh {_ONES[year]}" if year < 10 else _cardinal(year))


def _digits(digits: str) -> str:
    return " ".join(_ONES[int(digit)] for digit in digits)


def _spell_number(match: re.Match) -> str:
    whole = match["whole"].replace(",", "")
    if not match["fraction"] and re.fullmatch(r"[1-9][0-9]{3}", match["whole"]):
        # Decades are said as years ("1960s" -> "nineteen sixties"), and so are four-digit numbers up
        # to 1999 written without a comma: "1908", "1800" (of a year or of dollars) are spoken
        # "nineteen oh eight", "eighteen hundred"; "1,800" stays "one thousand eight hundred".
        if match["suffix"] == "s" and whole.endswith("0"):
            return f" {_inflect_last_word(_year(int(whole)), 's')} "
        if not match["suffix"] and 1100 <= int(whole) <= 1999:
            return f" {_year(int(whole))} "
    # Leading zeros mean a code, not a quantity: "007" is "zero zero seven".
    words = _digits(whole) if len(whole) > 1 and whole[0] == "0" else _cardinal(int(whole))
    if match["fraction"]:
        words += " point " + _digits(match["fraction"])
    if match["suffix"]:
        words = _inflect_last_word(words, match["suffix"])
    return f" {words} "


def _spell_money(match: re.Match) -> str:
    major, majors, minor, minors = _CURRENCIES[match["symbol"]]
    amount = int(match["whole"].replace(",", ""))
    fraction = match["fraction"]
    if match["scale"] or (fraction and len(fraction) != 2):
        # "$5.5 million" is "five point five million dollars": the unit follows the whole quantity,
        # and a fraction that is not two digits of cents is read as a decimal.
        words = _cardinal(amount) + (f" point {_digits(fraction)}" if fraction else "")
        words += f" {match['scale']}" if match["scale"] else ""
        return f" {words} {majors} "
    cents = int(fraction or 0)
    parts = [f"{_cardinal(amount)} {major if amount == 1 else majors}"] if amount or not cents else []
    if cents:
        parts.append(f"{_cardinal(cents)} {minor if cents == 1 else minors}")
    return f" {' '.join(parts)} "


def _spell_time(match: re.Match) -> str:
    minute = match["minute"]
    if minute == "00":
        # "3:00 p.m." is said "three p m"; someone saying "o'clock" gets "3 o'clock" written.
        return f" {_cardinal(int(match['hour']))} "
    minute_words = f"oh {_ONES[int(minute)]}" if minute[0] == "0" else _cardinal(int(minute))
    return f" {_cardinal(int(match['hour']))} {minute_words} "


def _fold_to_ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_text(text: str) -> str:
    """Reduce text to lower-case words over a-z and apostrophe, separated by single spaces.

    Unicode is NFKC-normalised, lower-cased and folded to ASCII ("café" -> "cafe"); numbers are
    spelled out as cardinals ("1,250" -> "one thousand two hundred fifty", "3.5" -> "three point
    five", "21st" -> "twenty first", "90s" -> "nineties"), "%" and "&" become "percent" and "and";
    every other character outside a-z becomes a space, and apostrophes survive only between letters.
    Decades, and numbers from 1100 to 1999 written without a comma, are read as years ("1960s" ->
    "nineteen sixties", "1908" -> "nineteen oh eight", "1800" -> "eighteen hundred"), and "and" goes
    from spelled numbers ("one hundred and forty" -> "one hundred forty"). Amounts of money and
    clock times are read as spoken ("$5.50" -> "five dollars fifty cents", "$2 million" -> "two
    million dollars", "3:05" -> "three oh five"), and so are titles and a few abbreviations ("Mr." ->
    "mister", "Mrs." -> "missus", "St." -> "saint", "O.K." -> "okay"), as whisper's English
    normaliser reads them. The result is a fixed point: ``normalize_text(normalize_text(s)) ==
    normalize_text(s)``.

    Parameters
    ----------
    text : str
        Any transcript, prompt or model output.

    Returns
    -------
    str
        Characters from ``DEFAULT_ALPHABET`` only, with no leading, trailing or repeated spaces.

    Examples
    --------
    >>> normalize_text("God bless ’em, I'm 100% sure -- it's well-known!")
    "god bless em i'm one hundred percent sure it's well known"
    >>> normalize_text("The 3rd of 4 naïve R&D teams")
    'the third of four naive r and d teams'
    >>> normalize_text("Mr. Hall paid $5 at 3:30 in the 1960s")
    'mister hall paid five dollars at three thirty in the nineteen sixties'
    """
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)).lower()
    text = _fold_to_ascii(text)
    text = _DOTTED_OKAY.sub(" okay ", text)
    text = _MONEY.sub(_spell_money, text)
    text = _TIME.sub(_spell_time, text)
    text = _NUMBER.sub(_spell_number, text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _OUTSIDE_ALPHABET.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub("", text)
    text = " ".join(_SPOKEN_WORDS.get(word, word) for word in text.split())
    return _AND_IN_NUMBER.sub(r"\1 ", text)


@dataclass(frozen=True)
class CharTokenizer:
    """Character vocabulary for CTC: id `BLANK_ID` (0) is the blank, then one id per character.

    Examples
    --------
    >>> tokenizer = CharTokenizer()
    >>> tokenizer.vocab_size
    29
    >>> tokenizer.encode("it's")
    [11, 22, 2, 21]
    >>> tokenizer.decode([11, 0, 22, 2, 21])
    "it's"
    """

    alphabet: str = DEFAULT_ALPHABET  # characters for ids 1..len(alphabet); must match normalize_text
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not self.alphabet:
            raise ValueError("alphabet must not be empty")
        duplicates = sorted({c for c in self.alphabet if self.alphabet.count(c) > 1})
        if duplicates:
            raise ValueError(f"alphabet repeats characters: {duplicates}")
        # object.__setattr__ because the dataclass is frozen; the lookup is derived, not state.
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(self.alphabet, start=BLANK_ID + 1)})

    @property
    def vocab_size(self) -> int:
        """Number of output classes, blank included."""
        return len(self.alphabet) + 1

    def encode(self, text: str) -> list[int]:
        """Ids for each character of already-normalised ``text``.

        Raises
        ------
        ValueError
            If a character is outside the alphabet; run `normalize_text` first.
        """
        try:
            return [self._ids[c] for c in text]
        except KeyError as error:
            position = text.index(error.args[0])
            raise ValueError(
                f"character {error.args[0]!r} at position {position} of {text!r} is not in the "
                "tokenizer alphabet; pass the text through normalize_text first"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ``ids``, skipping blanks; repeats are kept (collapsing them is CTC decoding's job)."""
        chars = []
        for token in ids:
            token = int(token)
            if not BLANK_ID <= token < self.vocab_size:
                raise ValueError(f"id {token} is outside the vocabulary (0..{self.vocab_size - 1})")
            if token != BLANK_ID:
                chars.append(self.alphabet[token - BLANK_ID - 1])
        return "".join(chars)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, as stored in a model card."""
        return {"alphabet": self.alphabet}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CharTokenizer":
        """Inverse of `to_dict`; unknown keys are an error rather than silently ignored."""
        unknown = sorted(set(data) - {"alphabet"})
        if unknown:
            raise ValueError(f"unknown CharTokenizer keys: {', '.join(unknown)}")
        return cls(**data)

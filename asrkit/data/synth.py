"""A labelled multi-voice speech corpus synthesised with Debian's TTS engines.

Needs ``flite``, ``festival`` (with festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts) and
``espeak-ng`` on the PATH. Leave every sentence of your evaluation sets out (see :func:`allowed_sentences`),
so that a WER measured on them stays honest.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from asrkit.audio import SAMPLE_RATE, AudioError, load_audio
from asrkit.text import normalize_text

# The text sources read_sentences knows: LJSpeech sentences, CMU ARCTIC prompts, Harvard sentences.
TEXT_SOURCES = ("ljspeech", "arctic", "harvard")
# (engine, voice): flite's and festival's voices sound far more natural than espeak-ng's, so they
# are drawn more often (see VOICE_WEIGHTS).
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
ESPEAK_VOICES = tuple(
    f"{accent}+{variant}"
    for accent in ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbcwmd")
    for variant in ("m1", "m3", "m5", "f1", "f3", "f4")
)
VOICES = (
    [("flite", v) for v in FLITE_VOICES]
    + [("festival", v) for v in FESTIVAL_VOICES]
    + [("espeak-ng", v) for v in ESPEAK_VOICES]
)
VOICE_WEIGHTS = {"flite": 0.45, "festival": 0.35, "espeak-ng": 0.2}
ENGINES = tuple(VOICE_WEIGHTS)
# the program each engine runs
ENGINE_TOOLS = {"flite": "flite", "festival": "text2wave", "espeak-ng": "espeak-ng"}
SPEED_RANGE = (0.85, 1.15)  # speaking-rate factor, 1.0 is the voice's own
PITCH_RANGE = (0.85, 1.2)  # pitch factor where the engine can set it
GAIN_DB_RANGE = (-12.0, 0.0)  # peak level after synthesis
MANIFEST_HEADER = ("path", "duration_s", "transcript", "speaker", "text_norm")
# Every engine speaks these titles in full, so the transcript must say what the audio says.
SPOKEN_ABBREVIATIONS = {"Mr.": "Mister", "Mrs.": "Missus", "Dr.": "Doctor", "St.": "Saint"}
_ABBREVIATION = re.compile("|".join(re.escape(a) for a in SPOKEN_ABBREVIATIONS))


@dataclass(frozen=True)
class SynthItem:
    """One utterance to synthesise."""

    # file stem, unique in the corpus
    id: str
    text: str
    engine: str
    voice: str
    # speaking-rate factor (> 1 is faster)
    speed: float
    # pitch factor (> 1 is higher), ignored by festival's diphone voices
    pitch: float
    # peak level in dB relative to full scale
    gain_db: float


def spoken_form(sentence: str) -> str:
    """The sentence with titles written as the engines say them.

    Examples
    --------
    >>> spoken_form("Mr. and Mrs. Dr. Smith")
    'Mister and Missus Doctor Smith'
    """
    return _ABBREVIATION.sub(lambda m: SPOKEN_ABBREVIATIONS[m.group(0)], sentence)


def read_sentences(text_dir: str | Path, *, sources: Iterable[str] = TEXT_SOURCES) -> list[str]:
    """Sentences of the text sources named in ``sources`` (:data:`TEXT_SOURCES`), in that order, from ``text_dir``
    (``ljspeech_metadata.csv`` in LJSpeech's format, ``cmuarctic.data`` in CMU ARCTIC's, ``harvard_sentences.txt``
    with one sentence a line)."""
    text_dir = Path(text_dir)
    sentences = []
    for source in sources:
        if source == "ljspeech":
            with (text_dir / "ljspeech_metadata.csv").open(encoding="utf-8") as f:
                sentences += [row[2] for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE) if len(row) == 3]
        elif source == "arctic":
            lines = (text_dir / "cmuarctic.data").read_text(encoding="utf-8").splitlines()
            sentences += [line.split('"')[1] for line in lines if '"' in line]
        elif source == "harvard":
            lines = (text_dir / "harvard_sentences.txt").read_text(encoding="utf-8").splitlines()
            sentences += [line for line in lines if line.strip()]
        else:
            raise ValueError(f"unknown text source {source!r}; choose from {', '.join(TEXT_SOURCES)}")
    return sentences


def allowed_sentences(sentences: Iterable[str], excluded: Iterable[str]) -> list[str]:
    """Distinct sentences (after normalisation) that are not excluded and have words in them.

    A sentence is excluded if it matches an excluded one as written or as spoken (:func:`spoken_form`).

    Examples
    --------
    >>> allowed_sentences(["Hello, world.", "hello world", "Keep me!", "Drop me."], ["drop ME"])
    ['Hello, world.', 'Keep me!']
    """
    banned = {normalize_text(form(s)) for s in excluded for form in (str, spoken_form)}
    seen: set[str] = set()
    kept = []
    for sentence in sentences:
        norm = normalize_text(sentence)
        if norm and norm not in banned and normalize_text(spoken_form(sentence)) not in banned and norm not in seen:
            seen.add(norm)
            kept.append(sentence)
    return kept


def plan(sentences: Sequence[str], *, seed: int = 0, engines: Sequence[str] = ENGINES) -> list[SynthItem]:
    """One item per sentence with a random voice of ``engines``, speed, pitch and gain (reproducible by seed)."""
    rng = random.Random(seed)
    voices = [(engine, voice) for engine, voice in VOICES if engine in engines]
    weights = [VOICE_WEIGHTS[engine] / sum(e == engine for e, _ in voices) for engine, _ in voices]
    items = []
    for i, text in enumerate(sentences):
        engine, voice = rng.choices(voices, weights)[0]
        items.append(
            SynthItem(
                id=f"syn{seed:02d}_{i:06d}",
                text=spoken_form(text),
                engine=engine,
                voice=voice,
                speed=round(rng.uniform(*SPEED_RANGE), 3),
                pitch=round(rng.uniform(*PITCH_RANGE), 3),
                gain_db=round(rng.uniform(*GAIN_DB_RANGE), 1),
            )
        )
    return items


def _command(item: SynthItem, text_file: Path, wav: Path) -> list[str]:
    if item.engine == "flite":
        base_f0 = 170.0 if item.voice == "slt" else 105.0
        return [
            "flite",
            "-voice",
            item.voice,
            "-f",
            str(text_file),
            "-o",
            str(wav),
            "--setf",
            f"duration_stretch={1 / item.speed:.3f}",
            "--setf",
            f"int_f0_target_mean={base_f0 * item.pitch:.0f}",
        ]
    if item.engine == "festival":
        return [
            "text2wave",
            "-eval",
            f"(voice_{item.voice})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {1 / item.speed:.3f})",
            "-o",
            str(wav),
            str(text_file),
        ]
    return [
        "espeak-ng",
        "-v",
        item.voice,
        "-s",
        str(round(165 * item.speed)),
        "-p",
        str(round(50 * item.pitch)),
        "-w",
        str(wav),
        "-f",
        str(text_file),
    ]


def synthesize(item: SynthItem, out_dir: Path) -> tuple[str, float] | None:
    """Synthesise one item to ``out_dir/wav/<id>.flac``; returns (relative path, seconds).

    An existing file is kept, so an interrupted build resumes where it stopped. None when the
    engine produced no usable audio.
    """
    relative = f"wav/{item.id}.flac"
    target = out_dir / relative
    if target.exists():
        return relative, sf.info(target).duration
    with tempfile.TemporaryDirectory() as tmp:
        text_file, wav = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(item.text + "\n", encoding="utf-8")
        done = subprocess.run(_command(item, text_file, wav), capture_output=True, timeout=120)
        if done.returncode != 0 or not wav.exists():
            return None
        try:
            audio = load_audio(wav)
        except AudioError:
            return None
    peak = float(np.max(np.abs(audio)))
    if peak < 1e-4:
        return None
    audio = audio * (10 ** (item.gain_db / 20) / peak)
    partial = target.with_suffix(".part.flac")
    sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16")
    partial.rename(target)  # a file only ever appears complete
    return relative, len(audio) / SAMPLE_RATE


def build_corpus(items: Sequence[SynthItem], out_dir: str | Path, *, jobs: int = 2) -> Path:
    """Synthesise every item (in ``jobs`` processes) and write ``out_dir/manifest.tsv``."""
    missing = sorted(
        {ENGINE_TOOLS[item.engine] for item in items} - {t for t in ENGINE_TOOLS.values() if shutil.which(t)}
    )
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: apt-get install flite festival festvox-kallpc16k "
            "festvox-kdlpc16k festvox-us-slt-hts espeak-ng"
        )
    out_dir = Path(out_dir)
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    with ProcessPoolExecutor(jobs) as pool:
        results = pool.map(synthesize, items, [out_dir] * len(items), chunksize=8)
        for item, result in tqdm(zip(items, results), total=len(items), unit="utt", desc="synthesising"):
            if result is not None:
                path, seconds = result
                speaker = f"{item.engine}:{item.voice}"
                rows.append((path, f"{seconds:.3f}", item.text, speaker, normalize_text(item.text)))
    manifest = out_dir / "manifest.tsv"
    with manifest.open("w", encoding="utf-8") as f:
        # written by hand: csv's quoting would mangle the quote marks that are part of the text
        f.write("\t".join(MANIFEST_HEADER) + "\n")
        f.writelines("\t".join(" ".join(field.split()) for field in row) + "\n" for row in rows)
    return manifest

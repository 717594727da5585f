"""Long recordings: the app's File tab, which transcribes in pieces to show progress, against one whole-file
transcription (what ``asrkit transcribe`` does).

    .venv/bin/python benchmarks/bench_long_files.py [--data ../shared/data] [--manifest splits/kathleen_dev.tsv]
        [--files 5] [--per-file 25] [--model NAME]

Each long file strings ``--per-file`` consecutive utterances of the manifest together with 0.4 s pauses.
Three ways of transcribing it are scored on the joined references (corpus WER over all files):

- whole: ``model.transcribe`` of the whole file (Whisper moves its 30-s window itself and conditions
  each window on the text before it);
- pieces: the File tab's way: :func:`asrkit.widgets.file_mode.piece_bounds` cuts at quiet moments,
  each piece is transcribed alone;
- pieces, conditioned: the same pieces, each expecting (``with_prompt``) the last words of the text
  before it, as many as fit the prompt; models without prompts skip this row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.contracts import PromptError
from asrkit.manifest import read_manifest
from asrkit.metrics import score_corpus
from asrkit.models import load_model
from asrkit.widgets.file_mode import piece_bounds

PAUSE_S = 0.4
# words of the text before a piece that it is first asked to expect; fewer when they do not fit the prompt
CONTEXT_WORDS = 40


def _takes_prompts(model) -> bool:
    try:
        model.with_prompt("hello")
    except PromptError:
        return False
    return True


def _expecting(model, text: str):
    """``model`` expecting the last words of ``text``: as many of CONTEXT_WORDS as its prompt takes."""
    words = text.split()[-CONTEXT_WORDS:]
    while words:
        try:
            return model.with_prompt(" ".join(words))
        except PromptError:
            words = words[5:]
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--manifest", default="splits/kathleen_dev.tsv", help="relative to --data")
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--per-file", type=int, default=25)
    parser.add_argument("--model", default=None, help="registry name or folder (default: the default model)")
    args = parser.parse_args()

    utterances = read_manifest(args.data / args.manifest)
    groups = [utterances[i : i + args.per_file] for i in range(0, args.files * args.per_file, args.per_file)]
    groups = [g for g in groups if g]
    model = load_model(args.model)
    prompted = _takes_prompts(model)
    # the first call builds the model's graphs: kept out of the timings
    model.transcribe(load_audio(utterances[0].audio_path))
    pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
    references, audio_s = [], 0.0
    ways = {"whole": [], "pieces": [], "pieces, conditioned": []}
    seconds = dict.fromkeys(ways, 0.0)
    pieces_count = 0
    for group in groups:
        audio = np.concatenate([part for u in group for part in (load_audio(u.audio_path), pause)])
        audio_s += len(audio) / SAMPLE_RATE
        references.append(" ".join(u.transcript for u in group))
        bounds = piece_bounds(audio)
        pieces_count += len(bounds)

        began = time.perf_counter()
        ways["whole"].append(model.transcribe(audio).text)
        seconds["whole"] += time.perf_counter() - began

        began = time.perf_counter()
        ways["pieces"].append(" ".join(model.transcribe(audio[a:b]).text.strip() for a, b in bounds))
        seconds["pieces"] += time.perf_counter() - began

        if prompted:
            began = time.perf_counter()
            text = ""
            for a, b in bounds:
                text = f"{text} {_expecting(model, text).transcribe(audio[a:b]).text.strip()}".strip()
            ways["pieces, conditioned"].append(text)
            seconds["pieces, conditioned"] += time.perf_counter() - began
        print(f"file {len(references)}: {len(audio) / SAMPLE_RATE:.0f} s, {len(bounds)} pieces", flush=True)

    print(
        f"\n{model.name} on {len(groups)} files of {args.per_file} utterances of {args.manifest} "
        f"({audio_s:.0f} s, {pieces_count} pieces)"
    )
    print(f"{'transcribed as':<22}{'WER %':>8}{'RTF':>8}")
    for way, hypotheses in ways.items():
        if hypotheses:
            wer = score_corpus(references, hypotheses).wer
            print(f"{way:<22}{100 * wer:>8.2f}{seconds[way] / audio_s:>8.3f}")


if __name__ == "__main__":
    main()

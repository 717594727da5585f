import pytest
from conftest import FIXTURES_DEV, shared_path

from asrkit.manifest import ManifestError, read_manifest


def test_shared_tsv_paths_resolve_relative_to_manifest():
    utts = read_manifest(shared_path(FIXTURES_DEV))
    assert len(utts) == 23
    assert all(u.audio_path.is_file() for u in utts)
    assert utts[1].transcript == "he was not an ill disposed young man"
    assert utts[1].duration_s == pytest.approx(2.99)


def test_quotes_in_tsv_are_kept(tmp_path):
    (tmp_path / "m.tsv").write_text('path\ttranscript\na.wav\t"God bless \'em," he said\n')
    assert read_manifest(tmp_path / "m.tsv")[0].transcript == '"God bless \'em," he said'


def test_nemo_jsonl(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        '{"audio_filepath": "a/b.wav", "text": "hi", "duration": 1.5}\n\n'
        '{"audio_filepath": "/abs/c.wav", "text": "yo"}\n'
    )
    a, b = read_manifest(tmp_path / "m.jsonl")
    assert a.audio_path == tmp_path / "a" / "b.wav" and a.duration_s == 1.5 and a.id == "b"
    assert str(b.audio_path) == "/abs/c.wav" and b.duration_s is None


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.tsv", "file\ttext\na.wav\thi\n", "lacks column"),
        ("m.tsv", "path\ttranscript\tduration_s\na.wav\thi\tlong\n", "not a number"),
        ("m.tsv", "path\ttranscript\na.wav\n", ":2: expected 2"),
        ("m.jsonl", '{"audio_filepath": "a.wav"}\n', ":1: needs keys"),
        ("m.jsonl", "{not json\n", ":1: not JSON"),
        ("m.jsonl", "[1, 2]\n", ":1: needs keys"),
        ("m.csv", "path,transcript\n", "unknown manifest type"),
    ],
)
def test_bad_manifests(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / name)


def test_missing_and_binary_manifests(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "none.tsv")
    (tmp_path / "bin.tsv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(tmp_path / "bin.tsv")


def test_librispeech_layout(tmp_path):
    chapter = tmp_path / "1089" / "134686"
    chapter.mkdir(parents=True)
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT INTO YOU\n"
    )
    utts = read_manifest(tmp_path)
    assert [u.id for u in utts] == ["1089-134686-0000", "1089-134686-0001"]
    assert utts[0].audio_path == chapter / "1089-134686-0000.flac" and utts[0].speaker == "1089"
    assert utts[1].transcript == "STUFF IT INTO YOU"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no LibriSpeech"):
        read_manifest(tmp_path / "empty")

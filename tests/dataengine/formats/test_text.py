"""Report bytes and tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataengine.errors import ConfigError, DecodeError
from dataengine.formats.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    VocabTokenizer,
    decode_report_bytes,
    load_tokenizer,
)

TOKENS = ["the", "th", " lesion", " le", "é", "ms", "\U0001f600!"]
VOCAB = VocabTokenizer(TOKENS)


def _vocab_file(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# -- ByteTokenizer ----------------------------------------------------------


def test_byte_tokenizer_ids_are_utf8_bytes() -> None:
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id) == (259, 256, 257, 258)
    assert tok.encode("Aé") == [0x41, 0xC3, 0xA9]
    assert tok.encode("") == []


def test_byte_tokenizer_decode_drops_specials_and_replaces_broken_utf8() -> None:
    tok = ByteTokenizer()
    assert tok.decode([BOS_ID, 0x68, 0x69, EOS_ID, PAD_ID, PAD_ID]) == "hi"
    assert tok.decode([0x41, 0xC3]) == "A\ufffd"  # a cut multi-byte character


def test_out_of_range_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="token id 259"):
        ByteTokenizer().decode([1, 259])
    with pytest.raises(ValueError, match="token id -1"):
        VOCAB.decode([-1])


@given(st.text())
def test_byte_tokenizer_round_trips(text: str) -> None:
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(text)) == text


# -- VocabTokenizer ---------------------------------------------------------


def test_vocab_ids_follow_the_byte_and_special_ids() -> None:
    assert VOCAB.vocab_size == 259 + len(TOKENS)
    assert (VOCAB.pad_id, VOCAB.bos_id, VOCAB.eos_id) == (256, 257, 258)


def test_vocab_encode_takes_the_longest_match_at_each_position() -> None:
    ids = VOCAB.encode("the lesion thé 5ms\U0001f600!")
    the, th, lesion, le, e_acute, ms, smile = range(259, 266)

    assert ids == [
        the,  # "the" beats "th"
        lesion,  # " lesion" beats " le"
        0x20,  # " t" is no token: byte fallback for the space...
        th,  # ..."th" then matches, "thé" being no token
        e_acute,  # a multi-byte token
        0x20,
        ord("5"),
        ms,
        smile,  # 4-byte emoji + "!"
    ]
    assert VOCAB.encode(" le") == [le]
    assert VOCAB.encode(" lesio") == [le, ord("s"), ord("i"), ord("o")]  # backtracks to " le"


def test_vocab_decode_drops_specials() -> None:
    assert VOCAB.decode([BOS_ID, 259, 262, EOS_ID, PAD_ID]) == "the le"


@given(st.text())
def test_vocab_tokenizer_round_trips(text: str) -> None:
    assert VOCAB.decode(VOCAB.encode(text)) == text


@given(st.lists(st.sampled_from(["the", " lesion", "é", "x", " ", "ms"]), max_size=30))
def test_vocab_tokenizer_round_trips_token_heavy_text(parts: list[str]) -> None:
    text = "".join(parts)
    assert VOCAB.decode(VOCAB.encode(text)) == text


def test_load_tokenizer_reads_and_caches_a_vocab_file(tmp_path: Path) -> None:
    path = _vocab_file(tmp_path / "vocab.json", {"type": "medstream-vocab", "tokens": TOKENS})

    tok = load_tokenizer(str(path))

    assert tok.vocab_size == 266
    assert tok.encode("the lesion") == [259, 261]
    assert load_tokenizer(str(path)) is tok


def test_load_tokenizer_byte_is_the_shared_byte_tokenizer() -> None:
    tok = load_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer)
    assert load_tokenizer("byte") is tok


@pytest.mark.parametrize(
    "doc,problem",
    [
        ({"type": "bpe", "tokens": []}, "'type' must be 'medstream-vocab', got 'bpe'"),
        (["the"], "'type' must be 'medstream-vocab', got 'list'"),
        ({"type": "medstream-vocab"}, "'tokens' must be a list of strings"),
        ({"type": "medstream-vocab", "tokens": ["a", ""]}, "token 1 must be a non-empty string"),
        ({"type": "medstream-vocab", "tokens": ["a", 7]}, "token 1 must be a non-empty string"),
        ({"type": "medstream-vocab", "tokens": ["ab", "c", "ab"]}, "token 2 .* repeats token 0"),
    ],
)
def test_invalid_vocab_file_is_config_error(tmp_path: Path, doc: object, problem: str) -> None:
    path = _vocab_file(tmp_path / "bad.json", doc)
    with pytest.raises(ConfigError, match=rf"pipeline\.tokenizer: .*bad\.json: {problem}") as info:
        load_tokenizer(str(path))
    assert info.value.field == "pipeline.tokenizer"


def test_missing_or_unparsable_vocab_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json: no such file"):
        load_tokenizer(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: cannot read a JSON vocabulary"):
        load_tokenizer(str(broken))
    with pytest.raises(ConfigError, match=r"pipeline\.tokenizer"):
        load_tokenizer("")


# -- report bytes -----------------------------------------------------------


def test_utf8_report_decodes() -> None:
    assert decode_report_bytes("Lésion de 5 mm.".encode()) == "Lésion de 5 mm."
    assert decode_report_bytes(b"") == ""


def test_utf8_bom_is_dropped() -> None:
    assert decode_report_bytes(b"\xef\xbb\xbfNo acute findings.") == "No acute findings."


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom_decodes(encoding: str) -> None:
    bom = b"\xff\xfe" if encoding == "utf-16-le" else b"\xfe\xff"
    text = "Befund: Läsion 5 mm \U0001f600"
    assert decode_report_bytes(bom + text.encode(encoding)) == text


def test_non_utf8_report_is_decode_error_with_offset() -> None:
    latin1 = "Patient: Müller".encode("latin-1")  # 0xFC at byte 10
    with pytest.raises(DecodeError, match=r"not valid UTF-8 at byte 10: invalid start byte"):
        decode_report_bytes(latin1)


def test_offset_counts_the_utf8_bom() -> None:
    with pytest.raises(DecodeError, match="at byte 5: "):
        decode_report_bytes(b"\xef\xbb\xbfok\xff")


def test_broken_utf16_is_decode_error() -> None:
    # A low surrogate (0xDC00) with no high surrogate before it, after BOM + "ok".
    lone_surrogate = b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xdca\x00"
    with pytest.raises(DecodeError, match="not valid UTF-16 at byte 6: illegal encoding"):
        decode_report_bytes(lone_surrogate)

"""Report bytes and tokenizers."""

# ruff: noqa: RUF001  (Chinese report text uses full-width punctuation)
from __future__ import annotations

import codecs
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
    HFTokenizer,
    VocabTokenizer,
    decode_report_bytes,
    decode_text,
    load_tokenizer,
    tokenizer_identity,
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

# A real-looking Chinese chest CT / ECG report (simplified Chinese).
ZH_REPORT = (
    "检查所见：双肺纹理清晰，未见明显实质性病变。纵隔居中，心影大小形态正常。\n"
    "印象：胸部CT平扫未见明显异常。心电图：窦性心律，心率72次/分。"
)
# With characters outside GB2312 (GBK extension: 镕 and the rare surname 堃).
ZH_RARE = "患者朱镕堃，冠状动脉CT血管成像：前降支近段狭窄约50%。"


def test_utf8_report_decodes() -> None:
    assert decode_report_bytes("Lésion de 5 mm.".encode()) == "Lésion de 5 mm."
    assert decode_report_bytes(ZH_REPORT.encode()) == ZH_REPORT
    assert decode_report_bytes(b"") == ""
    assert decode_text(ZH_REPORT.encode()) == (ZH_REPORT, "utf-8")


def test_utf8_bom_is_dropped() -> None:
    assert decode_report_bytes(b"\xef\xbb\xbfNo acute findings.") == "No acute findings."
    assert decode_text(codecs.BOM_UTF8 + ZH_REPORT.encode()) == (ZH_REPORT, "utf-8-sig")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("text", ["Befund: Läsion 5 mm \U0001f600", ZH_REPORT])
def test_utf16_and_utf32_with_bom_decode(encoding: str, text: str) -> None:
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[encoding]
    assert decode_text(bom + text.encode(encoding)) == (text, encoding)


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "gb2312"])
def test_chinese_legacy_encodings_are_detected(encoding: str) -> None:
    data = ZH_REPORT.encode(encoding)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really not UTF-8
    assert decode_text(data) == (ZH_REPORT, "gb18030")


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_characters_outside_gb2312_survive(encoding: str) -> None:
    assert decode_report_bytes(ZH_RARE.encode(encoding)) == ZH_RARE


def test_gb18030_four_byte_characters() -> None:
    text = "心电图 QRS 时限正常 \u20ac \U0001f600"  # four-byte GB18030 sequences
    assert decode_report_bytes(text.encode("gb18030")) == text


@pytest.mark.parametrize(
    "text,offset",
    [
        ("Patient: Müller, Jürgen. Lungenflügel unauffällig.", 10),  # decodes as GB18030 too
        ("Résumé: poumons clairs, pas d'épanchement.", 1),
    ],
)
def test_latin1_is_a_decode_error_naming_the_offset(text: str, offset: int) -> None:
    """Latin-1 is refused, not guessed: German umlauts even decode as
    GB18030 (into rare GBK-only ideographs), and the plausibility check
    refuses that."""
    data = text.encode("latin-1")
    with pytest.raises(
        DecodeError, match=rf"not UTF-8 \(byte 0x[0-9a-f]{{2}} at offset {offset}: "
    ):
        decode_report_bytes(data)


def test_decode_error_names_the_file() -> None:
    with pytest.raises(DecodeError, match=r"^a/report\.txt: not UTF-8 .* re-encode it as UTF-8"):
        decode_text("Größe".encode("latin-1"), label="a/report.txt")


def test_offset_after_a_bom() -> None:
    with pytest.raises(
        DecodeError, match="utf-8-sig byte-order mark but is not valid utf-8-sig at byte 5"
    ):
        decode_report_bytes(b"\xef\xbb\xbfok\xff")


def test_broken_utf16_is_decode_error() -> None:
    # A low surrogate (0xDC00) with no high surrogate before it, after BOM + "ok".
    lone_surrogate = b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xdca\x00"
    with pytest.raises(DecodeError, match="not valid utf-16-le at byte 6: illegal encoding"):
        decode_report_bytes(lone_surrogate)


_BOM = {
    "utf-8-sig": codecs.BOM_UTF8,
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-32-be": codecs.BOM_UTF32_BE,
}


@given(st.one_of(st.binary(max_size=200), st.text(max_size=60).map(lambda t: t.encode("gb18030"))))
def test_any_bytes_give_lossless_text_or_decode_error(data: bytes) -> None:
    """Whatever is accepted is decoded losslessly: encoding the text again
    gives back the very bytes."""
    try:
        text, encoding = decode_text(data)
    except DecodeError:
        return
    bom = _BOM.get(encoding, b"")
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    assert bom + text.encode(codec) == data


# -- HFTokenizer (a language model's tokenizer.json) -------------------------


@pytest.mark.parametrize("style", ["llama", "qwen"])
def test_hf_tokenizer_gives_the_models_ids_without_specials(
    tmp_path: Path, write_hf_tokenizer, style: str
) -> None:
    from transformers import AutoTokenizer

    folder = write_hf_tokenizer(tmp_path / style, style)
    tok = load_tokenizer(str(folder / "tokenizer.json"))
    reference = AutoTokenizer.from_pretrained(str(folder))
    text = "FINDINGS: a 4 mm lesion. 心电图窦性心律 \U0001f600"

    assert isinstance(tok, HFTokenizer)
    assert tok.encode(text) == reference.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(reference)
    assert tok.eos_id == reference.eos_token_id
    if style == "llama":
        assert (tok.bos_id, tok.pad_id) == (reference.bos_token_id, reference.pad_token_id)
    else:  # no BOS and no PAD: the EOS frames and pads
        assert reference.bos_token_id is None and tok.bos_id == tok.pad_id == tok.eos_id
    assert load_tokenizer(str(folder / "tokenizer.json")) is tok


def test_hf_tokenizer_identity_follows_content_and_specials(
    tmp_path: Path, write_hf_tokenizer
) -> None:
    a = write_hf_tokenizer(tmp_path / "a") / "tokenizer.json"
    b = write_hf_tokenizer(tmp_path / "b") / "tokenizer.json"
    assert tokenizer_identity(str(a)) == tokenizer_identity(str(b))
    assert tokenizer_identity(str(a)).startswith("hf:")
    # The same file with another EOS is another tokenizer.
    c = tmp_path / "c"
    c.mkdir()
    (c / "tokenizer.json").write_bytes(a.read_bytes())
    (c / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>"}), encoding="utf-8")
    assert tokenizer_identity(str(c / "tokenizer.json")) != tokenizer_identity(str(a))


def test_hf_tokenizer_without_an_eos_is_config_error(tmp_path: Path, write_hf_tokenizer) -> None:
    folder = write_hf_tokenizer(tmp_path / "t")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|im_end|>"}), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"pipeline\.tokenizer: .*'<\|im_end\|>' is not in"):
        load_tokenizer(str(folder / "tokenizer.json"))
    broken = tmp_path / "broken" / "tokenizer.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps({"model": {"type": "nonsense"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not a Hugging Face tokenizer\.json"):
        load_tokenizer(str(broken))


def test_hf_tokenizer_ids_past_int16_are_stored_as_int32(tmp_path: Path) -> None:
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers

    from dataengine.pipeline.stored import decode_prefix, encode_prefix, to_stored

    words = {"[UNK]": 0, "</s>": 1, **{f"w{i}": i + 2 for i in range(40_000)}}
    big = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    big.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big.add_special_tokens(["</s>"])  # the id it has, marked special
    (tmp_path / "tokenizer.json").write_text(big.to_str(), encoding="utf-8")
    tok = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert (tok.vocab_size, tok.eos_id, tok.bos_id) == (40_002, 1, 1)  # "</s>" by name

    ids = [tok.bos_id, *tok.encode("w39999 w7 nonsense"), tok.eos_id]
    assert ids == [1, 40_001, 9, 0, 1]
    prefix = {
        "hu": np.zeros((1, 8, 8), np.float32),
        "wave": np.zeros((12, 16), np.float32),
        "tokens": np.asarray(ids, np.int32),
        "present": np.ones(2, np.uint8),
    }
    stored = to_stored(prefix, voi_lut=False, vocab_size=tok.vocab_size)
    assert stored["tokens"].dtype == np.int32
    assert decode_prefix(encode_prefix(3, stored), 3)["tokens"].tolist() == ids
    small = to_stored(
        prefix | {"tokens": np.asarray([1, 9], np.int32)}, voi_lut=False, vocab_size=320
    )
    assert small["tokens"].dtype == np.int16

"""Report files: .txt, .json (a configurable field) and .xml (a configurable
element, or all text), in the encodings hospitals export."""

# ruff: noqa: RUF001  (Chinese report text uses full-width punctuation)
from __future__ import annotations

import codecs
import json

import pytest

from dataengine.errors import DecodeError
from dataengine.formats.report import load_report, report_from_json, report_from_xml

ZH = "印象：胸部CT平扫未见明显异常。心电图：窦性心律，心率72次/分。"
EN = "FINDINGS: No focal consolidation.\nIMPRESSION: Normal chest."


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "gbk"])
def test_txt_report(encoding: str) -> None:
    assert load_report(ZH.encode(encoding), "s1/report.txt") == ZH


def test_json_report_field_default_and_nested() -> None:
    doc = {"patient": {"id": "X"}, "report": EN, "exam": {"result": {"text": ZH}}}
    data = json.dumps(doc, ensure_ascii=False).encode()

    assert load_report(data, "r.json") == EN
    assert load_report(data, "r.JSON", field="exam.result.text") == ZH


def test_json_list_of_strings_is_joined() -> None:
    data = json.dumps({"report": ["FINDINGS: none.", "IMPRESSION: normal."]}).encode()
    assert report_from_json(data) == "FINDINGS: none.\nIMPRESSION: normal."


@pytest.mark.parametrize(
    "prefix,encoding",
    [(b"", "gbk"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF8, "utf-8")],
)
def test_json_in_other_encodings(prefix: bytes, encoding: str) -> None:
    data = prefix + json.dumps({"report": ZH}, ensure_ascii=False).encode(encoding)
    assert load_report(data, "r.json") == ZH


@pytest.mark.parametrize(
    "doc,field,match",
    [
        ({"text": "x", "id": 1}, "report", r"no field 'report' \(keys: 'id', 'text'\)"),
        ({"a": {"c": "x"}}, "a.b", r"no field 'a\.b' \(keys: 'c'\)"),
        ({"a": "x"}, "a.b", r"a is a JSON string, not an object with 'b'"),
        (["x"], "report", r"the document is a JSON array"),
        ({"report": 5}, "report", r"field 'report' is a JSON number, not a string"),
        ({"report": None}, "report", r"field 'report' is a JSON null"),
        ({"report": ["a", 1]}, "report", r"field 'report' is a JSON array, not a string or list"),
    ],
)
def test_json_errors_name_the_problem(doc: object, field: str, match: str) -> None:
    with pytest.raises(DecodeError, match=rf"^r\.json: {match}"):
        load_report(json.dumps(doc).encode(), "r.json", field=field)


def test_invalid_json_names_line_and_column() -> None:
    expected = r"^r\.json: invalid JSON at line 2 column 11: Expecting value"
    with pytest.raises(DecodeError, match=expected):
        load_report(b'{"report": "x",\n "other": tru}', "r.json")


def test_json_nesting_bomb_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="invalid JSON"):
        report_from_json(b"[" * 100_000 + b"]" * 100_000)


XML = """<?xml version="1.0" encoding="{enc}"?>
<study xmlns="urn:hospital:ris">
  <patient><name>REDACTED</name></patient>
  <findings>肺纹理清晰。</findings>
  <report>
    <impression>{text}</impression>
  </report>
</study>
"""


def test_xml_element_text() -> None:
    data = XML.format(enc="UTF-8", text=ZH).encode()

    assert load_report(data, "r.xml") == ZH  # <report> (namespace ignored), all its text
    assert load_report(data, "r.xml", field="findings") == "肺纹理清晰。"
    assert load_report(data, "r.xml", field="study.patient.name") == "REDACTED"


def test_xml_without_the_element_gives_all_text() -> None:
    data = XML.format(enc="UTF-8", text=ZH).encode()
    assert load_report(data, "r.xml", field="conclusion") == f"REDACTED\n肺纹理清晰。\n{ZH}"


@pytest.mark.parametrize("declared", ["GB2312", "GBK", "gb18030"])
def test_xml_in_a_declared_chinese_encoding(declared: str) -> None:
    data = XML.format(enc=declared, text=ZH).encode("gbk")
    assert report_from_xml(data) == ZH


def test_xml_declaring_utf8_but_encoded_in_gbk_is_detected() -> None:
    data = XML.format(enc="UTF-8", text=ZH).encode("gbk")
    assert report_from_xml(data) == ZH


def test_xml_utf16_with_bom() -> None:
    data = codecs.BOM_UTF16_LE + XML.format(enc="UTF-16", text=ZH).encode("utf-16-le")
    assert report_from_xml(data) == ZH


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<report>&lol3;</report>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<report>&xxe;</report>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        b'<!DOCTYPE report SYSTEM "http://example.invalid/r.dtd"><report>x</report>',
        b"<!doctype report><report>x</report>",
        codecs.BOM_UTF16_LE + "<!DOCTYPE r []><report>x</report>".encode("utf-16-le"),
    ],
)
def test_dtds_and_entities_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"DOCTYPE or ENTITY declaration is refused"):
        load_report(data, "evil.xml")


def test_undeclared_entity_is_a_parse_error_not_an_expansion() -> None:
    with pytest.raises(
        DecodeError, match=r"^r\.xml: invalid XML at line 1 column 8: undefined entity"
    ):
        load_report(b"<report>&xxe;</report>", "r.xml")


def test_malformed_xml_names_line_and_column() -> None:
    with pytest.raises(DecodeError, match=r"^r\.xml: invalid XML at line 3 column 2"):
        load_report(b"<report>\n<a>x</a>\n</b>", "r.xml")


def test_bad_field_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="dotted path"):
        load_report(b"{}", "r.json", field="a..b")

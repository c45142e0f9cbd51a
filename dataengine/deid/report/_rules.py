"""The pattern rules, highest priority first: one ``PatternRule`` per shape
of PHI (e-mail, national and labelled ids, record numbers, addresses, dates,
phones, names), each with the checks that reject look-alikes, and
``pattern_spans`` to run them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dataengine.deid.report._dates import (
    is_calendar_date,
    is_unambiguous_month_year,
    is_unambiguous_named_date,
)
from dataengine.deid.report._vocabulary import (
    BY_LABELS,
    CJK,
    CN_NAME,
    CN_NAME_LABELS,
    CN_NUMERALS,
    CN_PHONE_LABELS,
    CN_SURNAMES,
    CN_TITLES,
    EN_NAME_LABELS,
    EN_PHONE_LABELS,
    LABELLED_NAME,
    MONTH_RE,
    NO_ASCII_WORD_AFTER,
    NO_ASCII_WORD_BEFORE,
    NOT_AFTER_NUMBER,
    NOT_BEFORE_UNIT,
    OPTIONAL_TITLE,
    PHONE_BODY,
    STREET_SUFFIX,
    TITLED_NAME,
    TITLES,
)

__all__ = ["PATTERN_RULES", "PatternRule", "is_cn_resident_id", "pattern_spans"]


@dataclass(frozen=True)
class PatternRule:
    """One pattern: spans of ``group`` (``-1``: the first group that took
    part) in its matches are PHI of type ``kind``."""

    kind: str
    pattern: re.Pattern[str]
    group: int = 0  # the group to replace; labels outside it are kept
    valid: Callable[[str], bool] | None = None  # on the group's text
    lead: Callable[[str], int] | None = None  # leading characters that are not PHI


# -- validators ---------------------------------------------------------------

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def is_cn_resident_id(value: str) -> bool:
    """True when ``value`` is 17 digits plus the right ISO 7064 MOD 11-2 check
    character (a digit or ``X``), as on a mainland-China resident id card."""
    v = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", v):
        return False
    total = sum(int(c) * w for c, w in zip(v[:17], _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == v[17]


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _has_digits(n: int) -> Callable[[str], bool]:
    return lambda s: _digits(s) >= n


def _digits_between(lo: int, hi: int) -> Callable[[str], bool]:
    return lambda s: lo <= _digits(s) <= hi


def _us_phone(s: str) -> bool:
    """NANP: ten digits (after an optional country code 1), area code 2-9xx."""
    d = re.sub(r"\D", "", s)
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    return len(d) == 10 and d[0] in "23456789"


# A Chinese street address: [province][city][district][town]street + number 号.
_CN_ADDRESS = re.compile(
    rf"(?:[{CJK}]{{2,6}}(?:省|自治区|特别行政区))?(?:[{CJK}]{{1,6}}?(?:市|州|盟))?"
    rf"(?:[{CJK}]{{1,6}}?(?:区|县|旗))?(?:[{CJK}]{{1,8}}?(?:镇|乡|街道))?"
    rf"[{CJK}]{{1,10}}?(?:路|街|大道|大街|巷|弄|胡同|里|村)[{CN_NUMERALS}]+号院?"
    rf"(?:[{CN_NUMERALS}A-Za-z\-]+(?:号楼|栋|幢|座|单元|层|楼|室|号))*"
)
# Chinese has no spaces, so a match may start inside the words before the
# address ("患者住在北京市..."): those up to a locative verb are not address.
_CN_ADDRESS_LEAD = re.compile(
    r".*?(?:居住在|居住于|住在|住于|家住|现住|位于|来自|地址|住址|在|于|住)"
)


def _cn_address_lead(text: str) -> int:
    m = _CN_ADDRESS_LEAD.match(text)
    if m is not None and _CN_ADDRESS.fullmatch(text, m.end()):
        return m.end()
    return 0


def _valid_ssn(text: str) -> bool:
    area, group, serial = text.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# -- rules, highest priority first ---------------------------------------------------


PATTERN_RULES: tuple[PatternRule, ...] = (
    PatternRule(
        "EMAIL",
        re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
    ),
    # -- national ids
    PatternRule(
        "ID",
        re.compile(
            r"(?:公民身份号码|身份证号码|身份证号|身份证|证件号码|证件号"
            r"|(?i:(?<![A-Za-z])ID[ \t]*card(?:[ \t]+(?:no\.?|number))?))"
            r"[ \t]*[:\uff1a#]?[ \t]*(\d{17}[\dXx]|\d{15}|[A-Za-z0-9]{6,20})"
        ),
        1,
        _has_digits(6),
    ),
    PatternRule(
        "ID",
        re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])"),
        0,
        is_cn_resident_id,
    ),
    PatternRule("ID", re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])"), 0, _valid_ssn),
    # -- record numbers
    PatternRule(
        "MRN",
        re.compile(
            r"(?i:(?<![A-Za-z0-9])(?:MRN|M\.R\.N\.?|"
            r"medical[ \t]+record(?:[ \t]+(?:number|no\.?|num\.?|\#))?"
            r"|hospital[ \t]+(?:number|no\.?|num\.?|\#|id)|patient[ \t]+(?:id|number|no\.?|\#)"
            r"|pt\.?[ \t]+(?:id|no\.?|\#)|chart[ \t]+(?:number|no\.?|\#)|case[ \t]+(?:number|no\.?)"
            r"|health[ \t]+(?:card|plan)[ \t]+(?:number|no\.?)|NHS[ \t]+(?:number|no\.?)"
            r"|unit[ \t]+number|UR[ \t]+(?:number|no\.?)|inpatient[ \t]+(?:number|no\.?)))"
            r"[ \t]*(?:[:\uff1a#]|(?i:no\.?|number|num\.?))?[ \t]*\#?[ \t]*"
            r"([A-Za-z]{0,4}-?\d[A-Za-z0-9\-/]{1,20}[A-Za-z0-9])(?![0-9A-Za-z])"
        ),
        1,
        _has_digits(3),
    ),
    PatternRule(
        "MRN",
        re.compile(
            r"(?:住院号码|住院号|病历号|病案号|门诊号|就诊号|就诊卡号|医保卡号|医保号|登记号|患者编号"
            r"|病人编号|患者ID|病人ID|检查号|影像号|放射号|申请单号|ID号)"
            r"[ \t]*[:\uff1a#]?[ \t]*([A-Za-z0-9][A-Za-z0-9\-]{2,20})"
        ),
        1,
        _has_digits(3),
    ),
    PatternRule(
        "ID",
        re.compile(
            r"(?i:(?<![A-Za-z0-9])(?:accession(?:[ \t]+(?:number|no\.?|\#))?"
            r"|acc\.?[ \t]*(?:no\.?|\#)|ssn"
            r"|social[ \t]+security(?:[ \t]+(?:number|no\.?))?"
            r"|encounter(?:[ \t]+(?:id|number|no\.?))?|visit[ \t]+(?:id|number|no\.?)"
            r"|passport(?:[ \t]+(?:number|no\.?))?"
            r"|(?:insurance|policy|member|account|subscriber|beneficiary)"
            r"[ \t]+(?:id|number|no\.?|\#)"
            r"|(?:order|requisition|specimen|study)[ \t]+(?:id|number|no\.?|\#)"
            r"|driver'?s?[ \t]+licen[cs]e(?:[ \t]+(?:number|no\.?))?|id[ \t]+(?:number|no\.?)))"
            r"[ \t]*[:\uff1a#]?[ \t]*([A-Za-z0-9][A-Za-z0-9\-/.]{2,}[A-Za-z0-9])(?![0-9A-Za-z])"
        ),
        1,
        _has_digits(2),
    ),
    PatternRule(
        "ID",
        re.compile(
            r"(?<![A-Za-z0-9])(?:ID|Id)[ \t]*[:\uff1a#][ \t]*"
            r"([A-Za-z0-9][A-Za-z0-9\-/.]{1,}[A-Za-z0-9])(?![0-9A-Za-z])"
        ),
        1,
        _has_digits(2),
    ),
    # -- addresses
    PatternRule(
        "ADDRESS",
        re.compile(
            r"(?i:(?<![A-Za-z])(?:(?:home|street|mailing|postal)[ \t]+)?(?:address|addr\.?))"
            r"[ \t]*[:\uff1a][ \t]*([^\n]*?[^\s.;,])(?=[ \t]{2,}|\.?[ \t]*(?:\n|$)|[ \t]*;)"
        ),
        1,
    ),
    PatternRule(
        "ADDRESS",
        re.compile(
            r"(?:家庭住址|现住址|户籍地址|居住地址|联系地址|通讯地址|地址|住址)"
            r"[ \t]*[:\uff1a]?[ \t]*([^\s\uff0c,。\uff1b;]+)"
        ),
        1,
    ),
    PatternRule(
        "ADDRESS",
        re.compile(
            r"(?<![0-9A-Za-z_.,])\d{1,6}[A-Za-z]?(?:-\d{1,4})?"
            r"[ \t]+(?:[A-Z][A-Za-z'\-]*\.?[ \t]+){1,4}?"
            rf"{STREET_SUFFIX}\b\.?"
            r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm|\#)"
            r"\.?[ \t]*\#?[A-Za-z0-9\-]+)?"
            r"(?:,[ \t]*(?!Dr\b|Mr\b|Mrs\b|Ms\b|Prof\b)[A-Z][A-Za-z'\-]+"
            r"(?:[ \t][A-Z][A-Za-z'\-]+){0,2})?"
            r"(?:,?[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?(?!\d))?"
        ),
    ),
    PatternRule(
        "ADDRESS",
        re.compile(
            r"(?i:(?<![A-Za-z])(?:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]+Office[ \t]+Box))"
            r"[ \t]+\d{1,6}(?!\d)"
        ),
    ),
    PatternRule("ADDRESS", _CN_ADDRESS, 0, None, _cn_address_lead),
    # -- dates
    PatternRule(
        "DATE",
        re.compile(
            r"(?<![0-9A-Za-z_.])(?:19|20)\d{2}[ \t]*年[ \t]*\d{1,2}[ \t]*月"
            r"[ \t]*\d{1,2}[ \t]*[日号]"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}(?![\d.]\d)(?![0-9A-Za-z_])"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?![0-9A-Za-z_.])"
            r"|(?<![0-9A-Za-z_.])\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})(?![\d.]\d)(?![0-9A-Za-z_])"
        ),
        0,
        is_calendar_date,
    ),
    PatternRule(
        "DATE",
        re.compile(
            rf"{NO_ASCII_WORD_BEFORE}\d{{1,2}}(?:st|nd|rd|th)?[ \-]?(?:of[ \t]+)?"
            rf"{MONTH_RE}\.?,?[ \-](?:\d{{4}}|\d{{2}}){NO_ASCII_WORD_AFTER}"
            rf"|(?<![A-Za-z]){MONTH_RE}\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?,?[ \t]+\d{{4}}"
            rf"{NO_ASCII_WORD_AFTER}"
        ),
        0,
        is_unambiguous_named_date,
    ),
    PatternRule(
        "DATE",
        re.compile(
            rf"(?<![A-Za-z]){MONTH_RE}\.?,?[ \t]+(?:19|20)\d{{2}}{NO_ASCII_WORD_AFTER}"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}[ \t]*年[ \t]*(?:1[0-2]|0?[1-9])[ \t]*月(?![ \t]*\d)"
        ),
        0,
        is_unambiguous_month_year,
    ),
    # -- phones
    PatternRule(
        "PHONE",
        re.compile(
            rf"(?:(?i:(?<![A-Za-z])(?:{EN_PHONE_LABELS}))"
            rf"\.?(?:[ \t]*(?i:number|no\.?|\#))?|{CN_PHONE_LABELS})"
            rf"[ \t]*[:\uff1a]?[ \t]*({PHONE_BODY})(?!\d){NOT_BEFORE_UNIT}"
        ),
        1,
        _digits_between(6, 15),
    ),
    PatternRule(
        "PHONE",
        re.compile(
            rf"{NOT_AFTER_NUMBER}(?:(?:\+|00)86[ \-]?)?"
            rf"1[3-9]\d(?:[ \-]?\d{{4}}){{2}}(?!\d){NOT_BEFORE_UNIT}"
        ),
    ),
    PatternRule(
        "PHONE",
        re.compile(
            rf"{NOT_AFTER_NUMBER}(?:\+?1[ .\-]?)?(?:\(\d{{3}}\)[ ]?|\d{{3}}[ .\-])"
            rf"\d{{3}}[ .\-]\d{{4}}"
            rf"(?!\d){NOT_BEFORE_UNIT}"
        ),
        0,
        _us_phone,
    ),
    PatternRule(
        "PHONE",
        re.compile(
            rf"(?<![0-9A-Za-z_+])\+\d{{1,3}}(?:[ .\-]?\(?\d{{1,4}}\)?){{2,5}}(?!\d)"
            rf"{NOT_BEFORE_UNIT}"
        ),
        0,
        _digits_between(8, 15),
    ),
    PatternRule(
        "PHONE",
        re.compile(rf"(?<![0-9A-Za-z_+\-.])0\d{{2,3}}-\d{{7,8}}(?![\d\-]){NOT_BEFORE_UNIT}"),
    ),
    # -- names
    PatternRule(
        "NAME",
        re.compile(rf"(?<![A-Za-z])(?:{TITLES})\.?[ \t]+({TITLED_NAME})"),
        1,
    ),
    PatternRule(
        "NAME",
        re.compile(
            rf"(?:(?i:(?<![A-Za-z])(?:{EN_NAME_LABELS}))[ \t]*[:\uff1a]"
            rf"|(?i:(?<![A-Za-z]){BY_LABELS})[ \t]*[:\uff1a]?)[ \t]*"
            rf"{OPTIONAL_TITLE}({LABELLED_NAME})"
        ),
        1,
    ),
    PatternRule(
        "NAME",
        re.compile(rf"(?:{CN_NAME_LABELS})[ \t]*[:\uff1a][ \t]*({CN_NAME})|姓名[ \t]*({CN_NAME})"),
        -1,
    ),
    PatternRule("NAME", re.compile(rf"([{CN_SURNAMES}][{CJK}]{{0,2}}?)(?:{CN_TITLES})"), 1),
)


def pattern_spans(text: str) -> Iterable[tuple[int, int, str]]:
    """``(start, end, kind)`` of every rule's accepted matches in ``text``,
    rule by rule in ``PATTERN_RULES`` order (the order is the priority)."""
    for rule in PATTERN_RULES:
        for m in rule.pattern.finditer(text):
            if rule.group >= 0:
                group = rule.group
            else:  # the first group that took part in the match
                group = next((i for i in range(1, len(m.groups()) + 1) if m.start(i) >= 0), 0)
            start, end = m.span(group)
            if start == end:
                continue
            if rule.valid is not None and not rule.valid(text[start:end]):
                continue
            if rule.lead is not None:
                start += rule.lead(text[start:end])
            yield start, end, rule.kind

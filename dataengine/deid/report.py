"""Redact PHI from free-text reports (English and Chinese).

``find_phi`` locates spans; ``redact_report`` replaces each by a typed
placeholder such as ``[NAME]`` and counts them by type. Two sources of spans:

1. **Known values** from the same study's headers (the join: DICOM patient
   name, id, accession number, birth date; EDF patient fields), matched
   case-insensitively on word boundaries, longest first. This catches what no
   pattern can (a bare surname in running text).
2. **Patterns** (``_RULES``; each may carry a validator that rejects look-alikes):

   - ``EMAIL``: addresses;
   - ``ID``: the 18-digit Chinese resident id only when its ISO 7064 MOD 11-2
     check digit is right (or after a label such as ``身份证号``, which also
     takes the 15-digit form); US SSN ``###-##-####`` except the never-issued
     areas 000, 666, 9xx, group 00, serial 0000; labelled ids (accession,
     encounter, visit, passport, insurance, order numbers, ``ID:``);
   - ``MRN``: labelled record numbers (``MRN``, ``Hospital No.``, ``Patient ID``,
     ``住院号``, ``病历号``, ``门诊号`` ...);
   - ``ADDRESS``: ``123 Main Street``, ``45 Elm Ave., Springfield, MA 02110``,
     P.O. boxes, ``北京市朝阳区建国路88号``, and anything after ``Address:`` /
     ``地址:`` up to the end of the line;
   - ``DATE``: ``2021-03-04``, ``2021/3/4``, ``03/04/2021``, ``04.03.2021``,
     ``4 March 2021``, ``02-MAY-1951``, ``March 4, 2021``, ``March 2021``,
     ``2021年3月4日``, ``20210304``; numeric forms must be real calendar dates;
   - ``PHONE``: labelled numbers (``Tel:``, ``电话:`` ...), US
     ``(617) 555-0142`` / ``617-555-0142``, international ``+44 20 7946 0958``,
     11-digit mainland mobiles ``1[3-9]XXXXXXXXX`` (optional ``+86``, spaces,
     dashes), landlines ``010-12345678``. A number followed by a unit
     (``mm``, ``ms``, ``bpm``, ``%``, ``copies/mL`` ...) is never a phone;
   - ``NAME``: titled (``Dr. Jane Smith``, ``Mr Wang``, ``Prof. Li Wei``,
     ``Mrs. O'Neil-Baker``, ``张医生``) and labelled (``Patient: John Q. Public``,
     ``Referring physician:``, ``Signed by``, ``姓名:张三``, ``患者:``, ``医生:``).

Overlapping spans merge into one placeholder (the type of the
highest-priority span wins), so a partial match never leaves half a name.
Labels take an ASCII or a full-width colon. Labels and titles are kept, so
the text stays readable: ``Dr. [NAME]``, ``MRN: [MRN]``.

**Dates under a shift.** With ``date_shift_days`` (the same per-patient
offset applied to the DICOM DA values), a date that parses to a calendar day
becomes ``[DATE:YYYY-MM-DD]``, the shifted day in ISO form, so intervals
survive and the placeholder shows it was de-identified; a date without a day
(``March 2021``) and a birth date stay ``[DATE]``. Reading rules: ``a/b/yyyy`` and
``a-b-yyyy`` are month/day (US) unless ``a > 12``; ``a.b.yyyy`` is day.month;
a two-digit year ``yy`` is ``20yy`` below 50 and ``19yy`` otherwise.

Known gaps: names without a title or label that are not in the headers,
ages over 89, unlabelled ids of no recognisable shape, city names alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "PLACEHOLDER_RE",
    "PLACEHOLDER_TYPES",
    "PhiSpan",
    "date_variants",
    "find_phi",
    "is_cn_resident_id",
    "known_value_pattern",
    "name_variants",
    "parse_written_date",
    "redact_report",
]

PLACEHOLDER_TYPES = ("NAME", "MRN", "ID", "PHONE", "DATE", "EMAIL", "ORG", "ADDRESS", "PHI")

# A placeholder this module writes: ``[NAME]``, ``[DATE]``, ``[DATE:2020-11-27]``.
PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(PLACEHOLDER_TYPES) + r")(?::\d{4}-\d{2}-\d{2})?\]")

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_RE = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
# Month words that are also ordinary lowercase English words.
_AMBIGUOUS_MONTH_WORDS = frozenset({"may", "mar", "dec", "jan", "jun"})
_CJK = "\u4e00-\u9fff"
_NUM_CN = "0-9一二三四五六七八九十百零\u3007"

# A capitalised name word: Jane, O'Brien, O'Neil-Baker, McDonald, Smith-Jones,
# or an all-caps one (SMITH) after a title.
_NAME_WORD = (
    r"(?:[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"
    r"|[A-Z]{2,}(?:['\-][A-Z]+)?)"
)
_PARTICLE = r"(?:(?:van|von|de|der|den|del|della|di|da|du|le|la|ten|ter|bin|al)[ \t]+)"
# After an explicit label, all-caps names (DOE, JANE) and initials count too,
# but not the next label on the same line nor a department.
# (Words that are also common surnames, such as Ward, are not stop words.)
_CREDENTIALS = r"MD|DO|PhD|RN|NP|PA|MBBS|MBChB|FRCR|FRCP|MRCP|MSc|BSc|DNP|RT|RDMS|RRT|FACC|FACR"
_LABEL_STOP = (
    r"(?!(?:MRN|DOB|ID|Age|Sex|Gender|Tel|Phone|Date|Acc|Accession|Address|Email"
    r"|Dept|Department|Hospital|Clinic|Exam|Study|Patient|Name|Signed|Radiology|Cardiology"
    rf"|Neurology|Pathology|The|This|That|Dr|Prof|Mr|Mrs|Ms|{_CREDENTIALS})\b)"
)
# After a titled name, the next label or abbreviation is no part of it.
_TITLED_STOP = (
    rf"(?!(?:MRN|DOB|ID|Tel|Phone|Acc|Email|Exam|Date|ECG|EKG|CT|MRI|PET|{_CREDENTIALS})\b)"
)
_TITLES = r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Doctor|Sir|Dame|Madam|Mme|Mlle|MR|MRS|DR|PROF"
_NOT_TITLE = rf"(?!(?:{_TITLES})\b)"
_TITLED_NAME = (
    rf"{_PARTICLE}{{0,2}}{_NAME_WORD}"
    rf"(?:[ \t]+(?:[A-Z]\.[ \t]*)?{_PARTICLE}{{0,2}}{_NOT_TITLE}{_TITLED_STOP}{_NAME_WORD}){{0,2}}"
)
_LABELLED_TOKEN = rf"(?:{_LABEL_STOP}[A-Z][A-Za-z'\-]*[A-Za-z]|[A-Z]\.?(?![A-Za-z]))"
_LABELLED_NAME = rf"{_LABELLED_TOKEN}(?:,?[ \t]{_LABELLED_TOKEN}){{0,3}}"
_TITLE_OPT = r"(?:(?:Dr|Prof|Mr|Mrs|Ms|Miss)\.?[ \t]+)?"

_EN_NAME_LABELS = (
    r"patient(?:'s)?(?:[ \t]+(?:full[ \t]+)?name)?|(?:full[ \t]+)?name|pt|"
    r"(?:referring|ordering|attending|consulting|requesting|reading|reporting|interpreting"
    r"|performing|treating|primary)[ \t]+(?:physician|doctor|radiologist|clinician|provider"
    r"|consultant|surgeon)|physician|doctor|radiologist|cardiologist|surgeon|consultant"
    r"|technologist|technician|tech|nurse|sonographer|guardian|mother|father|spouse"
    r"|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|contact[ \t]+person|informant|attn|cc"
)
_BY_LABELS = (
    r"(?:electronically[ \t]+)?(?:signed|dictated|reported|read|reviewed|verified|approved"
    r"|transcribed|interpreted|performed|authored|prepared|ordered|referred|seen|examined"
    r"|confirmed|attested|typed|countersigned)[ \t]+by"
)
_CN_NAME_LABELS = (
    r"患者姓名|病人姓名|姓名|患者|病人|病患|受检者|主治医生|主治医师|报告医生|报告医师|审核医生"
    r"|审核医师|检查医生|检查医师|申请医生|申请医师|送检医生|诊断医生|医生|医师|签名|签字"
    r"|记录者|记录人|审核者|审核人|报告人|家属|联系人|监护人|技师|护士"
)
_CN_NAME_STOP = (
    r"(?=[\s\uff0c,。\uff1b;\uff1a:、\uff08\uff09()\[\]【】/]|$|性别|年龄|男|女|住院|病历|门诊|科室|床号|电话|手机"
    r"|身份证|出生|日期|检查|诊断|地址|编号|[0-9A-Za-z])"
)
_CN_NAME = rf"(?:[{_CJK}·]{{2,4}}?{_CN_NAME_STOP}|[{_CJK}]{{2,3}})"
_CN_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱"
    "严覃武戴莫孔向汤欧司诸"
)
_CN_TITLES = r"医生|医师|大夫|主任|教授|先生|女士|小姐|护士长|护士|老师"

_UNITS = (
    r"(?!\s?(?:%|‰|(?:mm|cm|km|m|µm|um|nm|ms|s|sec|min|h|hr|mg|g|kg|µg|ug|ng|ml|mL|dl|dL|l|L"
    r"|bpm|Hz|kHz|MHz|HU|mmHg|cmH2O|mSv|Sv|Gy|mGy|cGy|IU|U|mmol|µmol|umol|mol|mEq|copies"
    r"|cells|kcal|cal|px|pixels|voxels|slices|frames|beats|counts|x|\u00d7)(?![A-Za-z])))"
)
# ASCII-only edges: CJK characters are ``\w`` too, and "手机13812345678" has no \b.
_L = r"(?<![0-9A-Za-z_])"
_R = r"(?![0-9A-Za-z_])"
_NOT_AFTER_NUMBER = r"(?<![0-9A-Za-z_+])(?<!\d[.,])"

_PHONE_BODY = r"(?:\+\d{1,3}[ \-.]?)?(?:\(\d{1,4}\)[ \-.]?)?\d{2,11}(?:[ \-.]\d{2,8}){0,4}"
_EN_PHONE_LABELS = (
    r"tel|telephone|phone|mobile|mob|cell(?:[ \t]*phone)?|fax|pager|home[ \t]+phone"
    r"|work[ \t]+phone|contact[ \t]+(?:number|no\.?|phone)|call[ \t]*back(?:[ \t]+number)?"
)
_CN_PHONE_LABELS = r"联系电话|电话号码|手机号码|手机号|手机|电话|联系方式|传真|座机"

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way"
    r"|Terrace|Ter|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Crescent|Cres|Close|Row"
    r"|Trail|Alley|Plaza|Quay|Wharf|Mews|Gardens|Grove|Walk|Hill)"
)


@dataclass(frozen=True)
class PhiSpan:
    """One PHI span ``text[start:end]`` of type ``kind`` (a ``PLACEHOLDER_TYPES`` member)."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class _Rule:
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


def _two_digit_year(yy: int) -> int:
    return 2000 + yy if yy < 50 else 1900 + yy


def _month_number(word: str) -> int | None:
    w = word.lower().rstrip(".")
    for i, name in enumerate(_MONTHS):
        if w == name.lower() or (len(w) >= 3 and name.lower().startswith(w)):
            return i + 1
    return None


def _make_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


_DATE_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], dt.date | None]], ...] = (
    (
        re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"),
        lambda m: _make_date(int(m[1]), int(m[2]), int(m[3])),
    ),
    (
        re.compile(r"(\d{4})(\d{2})(\d{2})"),
        lambda m: _make_date(int(m[1]), int(m[2]), int(m[3])),
    ),
    (
        re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})"),
        lambda m: _numeric_dmy(int(m[1]), m[2], int(m[3]), m[4]),
    ),
    (
        re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[ \-]?(?:of\s+)?([A-Za-z]+)\.?,?[ \-](\d{4}|\d{2})"),
        lambda m: _named(m[3], m[2], int(m[1])),
    ),
    (
        re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})"),
        lambda m: _named(m[3], m[1], int(m[2])),
    ),
)


def _year(text: str) -> int:
    return int(text) if len(text) == 4 else _two_digit_year(int(text))


def _numeric_dmy(a: int, sep: str, b: int, year: str) -> dt.date | None:
    y = _year(year)
    if sep == "." or a > 12:
        return _make_date(y, b, a)
    return _make_date(y, a, b)


def _named(year: str, month_word: str, day: int) -> dt.date | None:
    month = _month_number(month_word)
    return None if month is None else _make_date(_year(year), month, day)


def parse_written_date(text: str) -> dt.date | None:
    """The calendar day a written date names (see the module docstring for
    the reading rules), or ``None`` when it names no single valid day."""
    t = text.strip()
    for pattern, build in _DATE_FORMS:
        m = pattern.fullmatch(t)
        if m:
            return build(m)
    return None


def _valid_date(text: str) -> bool:
    return parse_written_date(text) is not None


def _valid_month_year(text: str) -> bool:
    word = re.match(r"[A-Za-z]+", text.strip())
    return word is None or word.group(0) not in _AMBIGUOUS_MONTH_WORDS


def _valid_named_date(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text)
    if any(w in _AMBIGUOUS_MONTH_WORDS for w in words):
        return False
    return _valid_date(text)


# A Chinese street address: [province][city][district][town]street + number 号.
_CN_ADDRESS = re.compile(
    rf"(?:[{_CJK}]{{2,6}}(?:省|自治区|特别行政区))?(?:[{_CJK}]{{1,6}}?(?:市|州|盟))?"
    rf"(?:[{_CJK}]{{1,6}}?(?:区|县|旗))?(?:[{_CJK}]{{1,8}}?(?:镇|乡|街道))?"
    rf"[{_CJK}]{{1,10}}?(?:路|街|大道|大街|巷|弄|胡同|里|村)[{_NUM_CN}]+号院?"
    rf"(?:[{_NUM_CN}A-Za-z\-]+(?:号楼|栋|幢|座|单元|层|楼|室|号))*"
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


def _c(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_RULES: tuple[_Rule, ...] = (
    _Rule("EMAIL", _c(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    # -- national ids
    _Rule(
        "ID",
        _c(
            r"(?:公民身份号码|身份证号码|身份证号|身份证|证件号码|证件号"
            r"|(?i:(?<![A-Za-z])ID[ \t]*card(?:[ \t]+(?:no\.?|number))?))"
            r"[ \t]*[:\uff1a#]?[ \t]*(\d{17}[\dXx]|\d{15}|[A-Za-z0-9]{6,20})"
        ),
        1,
        _has_digits(6),
    ),
    _Rule(
        "ID",
        _c(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])"),
        0,
        is_cn_resident_id,
    ),
    _Rule("ID", _c(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])"), 0, _valid_ssn),
    # -- record numbers
    _Rule(
        "MRN",
        _c(
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
    _Rule(
        "MRN",
        _c(
            r"(?:住院号码|住院号|病历号|病案号|门诊号|就诊号|就诊卡号|医保卡号|医保号|登记号|患者编号"
            r"|病人编号|患者ID|病人ID|检查号|影像号|放射号|申请单号|ID号)"
            r"[ \t]*[:\uff1a#]?[ \t]*([A-Za-z0-9][A-Za-z0-9\-]{2,20})"
        ),
        1,
        _has_digits(3),
    ),
    _Rule(
        "ID",
        _c(
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
    _Rule(
        "ID",
        _c(
            r"(?<![A-Za-z0-9])(?:ID|Id)[ \t]*[:\uff1a#][ \t]*"
            r"([A-Za-z0-9][A-Za-z0-9\-/.]{1,}[A-Za-z0-9])(?![0-9A-Za-z])"
        ),
        1,
        _has_digits(2),
    ),
    # -- addresses
    _Rule(
        "ADDRESS",
        _c(
            r"(?i:(?<![A-Za-z])(?:(?:home|street|mailing|postal)[ \t]+)?(?:address|addr\.?))"
            r"[ \t]*[:\uff1a][ \t]*([^\n]*?[^\s.;,])(?=[ \t]{2,}|\.?[ \t]*(?:\n|$)|[ \t]*;)"
        ),
        1,
    ),
    _Rule(
        "ADDRESS",
        _c(
            r"(?:家庭住址|现住址|户籍地址|居住地址|联系地址|通讯地址|地址|住址)"
            r"[ \t]*[:\uff1a]?[ \t]*([^\s\uff0c,。\uff1b;]+)"
        ),
        1,
    ),
    _Rule(
        "ADDRESS",
        _c(
            r"(?<![0-9A-Za-z_.,])\d{1,6}[A-Za-z]?(?:-\d{1,4})?"
            r"[ \t]+(?:[A-Z][A-Za-z'\-]*\.?[ \t]+){1,4}?"
            rf"{_STREET_SUFFIX}\b\.?"
            r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm|\#)"
            r"\.?[ \t]*\#?[A-Za-z0-9\-]+)?"
            r"(?:,[ \t]*(?!Dr\b|Mr\b|Mrs\b|Ms\b|Prof\b)[A-Z][A-Za-z'\-]+"
            r"(?:[ \t][A-Z][A-Za-z'\-]+){0,2})?"
            r"(?:,?[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?(?!\d))?"
        ),
    ),
    _Rule(
        "ADDRESS",
        _c(
            r"(?i:(?<![A-Za-z])(?:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]+Office[ \t]+Box))"
            r"[ \t]+\d{1,6}(?!\d)"
        ),
    ),
    _Rule("ADDRESS", _CN_ADDRESS, 0, None, _cn_address_lead),
    # -- dates
    _Rule(
        "DATE",
        _c(
            r"(?<![0-9A-Za-z_.])(?:19|20)\d{2}[ \t]*年[ \t]*\d{1,2}[ \t]*月"
            r"[ \t]*\d{1,2}[ \t]*[日号]"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}(?![\d.]\d)(?![0-9A-Za-z_])"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?![0-9A-Za-z_.])"
            r"|(?<![0-9A-Za-z_.])\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})(?![\d.]\d)(?![0-9A-Za-z_])"
        ),
        0,
        _valid_date,
    ),
    _Rule(
        "DATE",
        _c(
            rf"{_L}\d{{1,2}}(?:st|nd|rd|th)?[ \-]?(?:of[ \t]+)?"
            rf"{_MONTH_RE}\.?,?[ \-](?:\d{{4}}|\d{{2}}){_R}"
            rf"|(?<![A-Za-z]){_MONTH_RE}\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?,?[ \t]+\d{{4}}{_R}"
        ),
        0,
        _valid_named_date,
    ),
    _Rule(
        "DATE",
        _c(
            rf"(?<![A-Za-z]){_MONTH_RE}\.?,?[ \t]+(?:19|20)\d{{2}}{_R}"
            r"|(?<![0-9A-Za-z_.])(?:19|20)\d{2}[ \t]*年[ \t]*(?:1[0-2]|0?[1-9])[ \t]*月(?![ \t]*\d)"
        ),
        0,
        _valid_month_year,
    ),
    # -- phones
    _Rule(
        "PHONE",
        _c(
            rf"(?:(?i:(?<![A-Za-z])(?:{_EN_PHONE_LABELS}))"
            rf"\.?(?:[ \t]*(?i:number|no\.?|\#))?|{_CN_PHONE_LABELS})"
            rf"[ \t]*[:\uff1a]?[ \t]*({_PHONE_BODY})(?!\d){_UNITS}"
        ),
        1,
        _digits_between(6, 15),
    ),
    _Rule(
        "PHONE",
        _c(
            rf"{_NOT_AFTER_NUMBER}(?:(?:\+|00)86[ \-]?)?"
            rf"1[3-9]\d(?:[ \-]?\d{{4}}){{2}}(?!\d){_UNITS}"
        ),
    ),
    _Rule(
        "PHONE",
        _c(
            rf"{_NOT_AFTER_NUMBER}(?:\+?1[ .\-]?)?(?:\(\d{{3}}\)[ ]?|\d{{3}}[ .\-])"
            rf"\d{{3}}[ .\-]\d{{4}}"
            rf"(?!\d){_UNITS}"
        ),
        0,
        _us_phone,
    ),
    _Rule(
        "PHONE",
        _c(rf"(?<![0-9A-Za-z_+])\+\d{{1,3}}(?:[ .\-]?\(?\d{{1,4}}\)?){{2,5}}(?!\d){_UNITS}"),
        0,
        _digits_between(8, 15),
    ),
    _Rule("PHONE", _c(rf"(?<![0-9A-Za-z_+\-.])0\d{{2,3}}-\d{{7,8}}(?![\d\-]){_UNITS}")),
    # -- names
    _Rule(
        "NAME",
        _c(rf"(?<![A-Za-z])(?:{_TITLES})\.?[ \t]+({_TITLED_NAME})"),
        1,
    ),
    _Rule(
        "NAME",
        _c(
            rf"(?:(?i:(?<![A-Za-z])(?:{_EN_NAME_LABELS}))[ \t]*[:\uff1a]"
            rf"|(?i:(?<![A-Za-z]){_BY_LABELS})[ \t]*[:\uff1a]?)[ \t]*"
            rf"{_TITLE_OPT}({_LABELLED_NAME})"
        ),
        1,
    ),
    _Rule(
        "NAME",
        _c(rf"(?:{_CN_NAME_LABELS})[ \t]*[:\uff1a][ \t]*({_CN_NAME})|姓名[ \t]*({_CN_NAME})"),
        -1,
    ),
    _Rule("NAME", _c(rf"([{_CN_SURNAMES}][{_CJK}]{{0,2}}?)(?:{_CN_TITLES})"), 1),
)


# -- spans ----------------------------------------------------------------------


def _normalize(value: str) -> str:
    return " ".join(value.split()).casefold()


def known_value_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive pattern matching any of ``values`` (one
    alternation, longest first; runs of whitespace inside a value match any
    whitespace). A value must not sit inside a longer word, except at a CJK
    edge (Chinese has no spaces between words). ``None`` when no values."""
    parts = []
    for value in sorted(set(values), key=lambda v: (-len(v), v)):
        words = value.split()
        if not words:
            continue
        body = r"\s+".join(re.escape(w) for w in words)
        left = "" if _is_cjk(words[0][0]) else r"(?<!\w)"
        right = "" if _is_cjk(words[-1][-1]) else r"(?!\w)"
        parts.append(left + body + right)
    if not parts:
        return None
    return re.compile("|".join(parts), re.IGNORECASE)


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def _usable_known(value: str) -> bool:
    """Skip values too short or too generic to redact on sight."""
    v = value.strip()
    if len(v) < 2:
        return False
    digits = sum(c.isdigit() for c in v)
    return not (digits == len(v) and len(v) < 4)


def _typed_known(known_phi: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    if isinstance(known_phi, Mapping):
        typed = {str(k).strip(): str(v) for k, v in known_phi.items()}
    else:
        typed = {str(k).strip(): "PHI" for k in known_phi}
    return {k: v for k, v in typed.items() if _usable_known(k)}


def _rule_spans(text: str) -> Iterable[tuple[int, int, str]]:
    for rule in _RULES:
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


def _merge(spans: Iterable[tuple[int, int, str, int]]) -> list[PhiSpan]:
    """Union of overlapping spans; each union takes the type of its
    highest-priority (lowest rank) member."""
    out: list[tuple[int, int, str, int]] = []
    for start, end, kind, rank in sorted(spans):
        if out and start < out[-1][1]:
            s0, e0, k0, r0 = out[-1]
            out[-1] = (s0, max(e0, end), k0 if r0 <= rank else kind, min(r0, rank))
        else:
            out.append((start, end, kind, rank))
    return [PhiSpan(s, e, k) for s, e, k, _ in out]


def find_phi(text: str, known_phi: Mapping[str, str] | Iterable[str] = ()) -> list[PhiSpan]:
    """PHI spans in ``text``, sorted and non-overlapping: known values first
    (see ``redact_report`` for ``known_phi``), then every pattern rule."""
    typed = _typed_known(known_phi)
    spans: list[tuple[int, int, str, int]] = []
    pattern = known_value_pattern(typed)
    if pattern is not None:
        by_norm = {_normalize(k): v for k, v in typed.items()}
        for m in pattern.finditer(text):
            spans.append((m.start(), m.end(), by_norm.get(_normalize(m.group(0)), "PHI"), 0))
    for rank, (start, end, kind) in enumerate(_rule_spans(text), start=1):
        spans.append((start, end, kind, rank))
    return _merge(spans)


# A birth date stays "[DATE]" even under a shift: the DICOM of the study
# empties PatientBirthDate in both date modes, and a shifted birth date next to
# a shifted exam date would still give the exact age.
_BIRTH_LABEL = re.compile(
    r"(?:(?i:(?<![A-Za-z])(?:DOB|D\.O\.B\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date"
    r"|born(?:[ \t]+on)?))"
    r"|出生日期|出生年月日|出生年月|出生|生日)[ \t]*[:\uff1a]?[ \t]*$"
)


def _shifted(text: str, days: int) -> str | None:
    day = parse_written_date(text)
    if day is None:
        return None
    try:
        return (day + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        return None


def redact_report(
    text: str,
    known_phi: Mapping[str, str] | Iterable[str] = (),
    *,
    date_shift_days: int | None = None,
) -> tuple[str, Counter[str]]:
    """Return ``text`` with PHI replaced by typed placeholders, and the number
    of replacements per type (``NAME``, ``MRN``, ``ID``, ``PHONE``, ``DATE``,
    ``EMAIL``, ``ADDRESS``, and for known values also ``ORG``; untyped known
    values count as ``PHI``).

    ``known_phi`` maps exact values from the study's headers to their type
    (a plain iterable of values is typed ``PHI``); values shorter than two
    characters and numbers shorter than four digits are ignored.
    ``date_shift_days``: days added to every date (negative moves it back);
    a shifted date is written ``[DATE:YYYY-MM-DD]``, except a birth date (after
    ``DOB``, ``born``, ``出生日期`` ...), which stays ``[DATE]`` as the DICOM
    ``PatientBirthDate`` is emptied. ``None`` writes ``[DATE]`` everywhere.
    """
    counts: Counter[str] = Counter()
    pieces: list[str] = []
    pos = 0
    for span in find_phi(text, known_phi):
        pieces.append(text[pos : span.start])
        placeholder = f"[{span.kind}]"
        if (
            span.kind == "DATE"
            and date_shift_days is not None
            and _BIRTH_LABEL.search(text, max(0, span.start - 24), span.start) is None
        ):
            iso = _shifted(text[span.start : span.end], date_shift_days)
            if iso is not None:
                placeholder = f"[DATE:{iso}]"
        pieces.append(placeholder)
        counts[span.kind] += 1
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces), counts


# -- written forms of header values -------------------------------------------------


def name_variants(person_name: str) -> list[str]:
    """Written forms of a DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` (or an
    EDF+ ``Given_Family`` name, or plain ``Given Family``): the raw value, each
    part, ``Given Family``, ``Family, Given``, ``Family Given``, with and
    without middle names and initials."""
    raw = person_name.strip()
    if not raw:
        return []
    out: list[str] = [raw]
    if "^" in raw:
        comps = [c.strip() for c in raw.split("=")[0].split("^")]
        family = comps[0] if comps else ""
        given = comps[1] if len(comps) > 1 else ""
        middle = comps[2] if len(comps) > 2 else ""
    else:
        words = raw.replace("_", " ").split()
        out.append(" ".join(words))
        if len(words) >= 2:
            given, family = words[0], words[-1]
            middle = " ".join(words[1:-1])
        else:
            given, family, middle = "", (words[0] if words else ""), ""
    family_words = family.replace("_", " ").split()
    given_words = given.replace("_", " ").split()
    middle_words = middle.split()
    fam = " ".join(family_words)
    giv = " ".join(given_words)
    for part in (*family_words, *given_words, *middle_words, fam, giv):
        out.append(part)
    if fam and giv:
        out += [f"{giv} {fam}", f"{fam}, {giv}", f"{fam} {giv}", f"{giv}_{fam}"]
        if middle_words:
            mid = " ".join(middle_words)
            initial = middle_words[0][0]
            out += [f"{giv} {mid} {fam}", f"{giv} {initial}. {fam}", f"{giv} {initial} {fam}"]
    seen: dict[str, None] = {}
    for v in out:
        v = v.strip()
        if v and _normalize(v) not in {_normalize(s) for s in seen}:
            seen[v] = None
    return list(seen)


def date_variants(value: str) -> list[str]:
    """Written forms of a date given as DICOM ``YYYYMMDD``, ISO ``YYYY-MM-DD``,
    or EDF+ ``DD-MMM-YYYY``: ISO, US and European numeric forms (with and
    without leading zeros), ``March 2, 2024``, ``2 Mar 2024``, ``02-MAR-2024``,
    ``YYYYMMDD``, EDF ``dd.mm.yy`` and ``2024年3月2日``. Unparseable input
    gives ``[value]``."""
    v = value.strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", v)
    e = re.fullmatch(r"(\d{1,2})[- ]([A-Za-z]{3})[- ](\d{4})", v)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif e:
        abbrevs = [name[:3].lower() for name in _MONTHS]
        if e.group(2).lower() not in abbrevs:
            return [v] if v else []
        y, mo, d = int(e.group(3)), abbrevs.index(e.group(2).lower()) + 1, int(e.group(1))
    else:
        return [v] if v else []
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return [v]
    month = _MONTHS[mo - 1]
    forms = [
        v,
        f"{y:04d}{mo:02d}{d:02d}",
        f"{y:04d}-{mo:02d}-{d:02d}",
        f"{y:04d}/{mo:02d}/{d:02d}",
        f"{mo:02d}/{d:02d}/{y:04d}",
        f"{mo}/{d}/{y:04d}",
        f"{d:02d}/{mo:02d}/{y:04d}",
        f"{d}/{mo}/{y:04d}",
        f"{d:02d}.{mo:02d}.{y:04d}",
        f"{d:02d}.{mo:02d}.{y % 100:02d}",
        f"{d:02d}-{month[:3].upper()}-{y:04d}",
        f"{month} {d}, {y:04d}",
        f"{month} {d:02d}, {y:04d}",
        f"{month[:3]} {d}, {y:04d}",
        f"{d} {month} {y:04d}",
        f"{d} {month[:3]} {y:04d}",
        f"{d:02d} {month[:3]} {y:04d}",
        f"{y}年{mo}月{d}日",
    ]
    return list(dict.fromkeys(forms))

"""The words and regular-expression pieces the report patterns are built
from: month names, titles, name labels (English and Chinese), name shapes,
units, phone labels, street suffixes. Fragments, not compiled patterns: the
rules (``_rules.py``) combine them."""

from __future__ import annotations

MONTHS = (
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
MONTH_RE = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
# Month words that are also ordinary lowercase English words.
AMBIGUOUS_MONTH_WORDS = frozenset({"may", "mar", "dec", "jan", "jun"})
CJK = "\u4e00-\u9fff"
CN_NUMERALS = "0-9一二三四五六七八九十百零\u3007"

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
TITLES = r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Doctor|Sir|Dame|Madam|Mme|Mlle|MR|MRS|DR|PROF"
_NOT_TITLE = rf"(?!(?:{TITLES})\b)"
TITLED_NAME = (
    rf"{_PARTICLE}{{0,2}}{_NAME_WORD}"
    rf"(?:[ \t]+(?:[A-Z]\.[ \t]*)?{_PARTICLE}{{0,2}}{_NOT_TITLE}{_TITLED_STOP}{_NAME_WORD}){{0,2}}"
)
_LABELLED_TOKEN = rf"(?:{_LABEL_STOP}[A-Z][A-Za-z'\-]*[A-Za-z]|[A-Z]\.?(?![A-Za-z]))"
LABELLED_NAME = rf"{_LABELLED_TOKEN}(?:,?[ \t]{_LABELLED_TOKEN}){{0,3}}"
OPTIONAL_TITLE = r"(?:(?:Dr|Prof|Mr|Mrs|Ms|Miss)\.?[ \t]+)?"

EN_NAME_LABELS = (
    r"patient(?:'s)?(?:[ \t]+(?:full[ \t]+)?name)?|(?:full[ \t]+)?name|pt|"
    r"(?:referring|ordering|attending|consulting|requesting|reading|reporting|interpreting"
    r"|performing|treating|primary)[ \t]+(?:physician|doctor|radiologist|clinician|provider"
    r"|consultant|surgeon)|physician|doctor|radiologist|cardiologist|surgeon|consultant"
    r"|technologist|technician|tech|nurse|sonographer|guardian|mother|father|spouse"
    r"|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|contact[ \t]+person|informant|attn|cc"
)
BY_LABELS = (
    r"(?:electronically[ \t]+)?(?:signed|dictated|reported|read|reviewed|verified|approved"
    r"|transcribed|interpreted|performed|authored|prepared|ordered|referred|seen|examined"
    r"|confirmed|attested|typed|countersigned)[ \t]+by"
)
CN_NAME_LABELS = (
    r"患者姓名|病人姓名|姓名|患者|病人|病患|受检者|主治医生|主治医师|报告医生|报告医师|审核医生"
    r"|审核医师|检查医生|检查医师|申请医生|申请医师|送检医生|诊断医生|医生|医师|签名|签字"
    r"|记录者|记录人|审核者|审核人|报告人|家属|联系人|监护人|技师|护士"
)
_CN_NAME_STOP = (
    r"(?=[\s\uff0c,。\uff1b;\uff1a:、\uff08\uff09()\[\]【】/]|$|性别|年龄|男|女|住院|病历|门诊|科室|床号|电话|手机"
    r"|身份证|出生|日期|检查|诊断|地址|编号|[0-9A-Za-z])"
)
CN_NAME = rf"(?:[{CJK}·]{{2,4}}?{_CN_NAME_STOP}|[{CJK}]{{2,3}})"
CN_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱"
    "严覃武戴莫孔向汤欧司诸"
)
CN_TITLES = r"医生|医师|大夫|主任|教授|先生|女士|小姐|护士长|护士|老师"

NOT_BEFORE_UNIT = (
    r"(?!\s?(?:%|‰|(?:mm|cm|km|m|µm|um|nm|ms|s|sec|min|h|hr|mg|g|kg|µg|ug|ng|ml|mL|dl|dL|l|L"
    r"|bpm|Hz|kHz|MHz|HU|mmHg|cmH2O|mSv|Sv|Gy|mGy|cGy|IU|U|mmol|µmol|umol|mol|mEq|copies"
    r"|cells|kcal|cal|px|pixels|voxels|slices|frames|beats|counts|x|\u00d7)(?![A-Za-z])))"
)
# ASCII-only edges: CJK characters are ``\w`` too, and "手机13812345678" has no \b.
NO_ASCII_WORD_BEFORE = r"(?<![0-9A-Za-z_])"
NO_ASCII_WORD_AFTER = r"(?![0-9A-Za-z_])"
NOT_AFTER_NUMBER = r"(?<![0-9A-Za-z_+])(?<!\d[.,])"

PHONE_BODY = r"(?:\+\d{1,3}[ \-.]?)?(?:\(\d{1,4}\)[ \-.]?)?\d{2,11}(?:[ \-.]\d{2,8}){0,4}"
EN_PHONE_LABELS = (
    r"tel|telephone|phone|mobile|mob|cell(?:[ \t]*phone)?|fax|pager|home[ \t]+phone"
    r"|work[ \t]+phone|contact[ \t]+(?:number|no\.?|phone)|call[ \t]*back(?:[ \t]+number)?"
)
CN_PHONE_LABELS = r"联系电话|电话号码|手机号码|手机号|手机|电话|联系方式|传真|座机"

STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way"
    r"|Terrace|Ter|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Crescent|Cres|Close|Row"
    r"|Trail|Alley|Plaza|Quay|Wharf|Mews|Gardens|Grove|Walk|Hill)"
)

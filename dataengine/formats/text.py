"""Report text: bytes -> str (encoding detection), and str <-> token ids.

Two tokenizers share one id layout: ids 0..255 are the UTF-8 bytes, 256..258
are PAD, BOS and EOS, and a vocabulary file adds tokens from 259 on. A third,
``HFTokenizer``, reads a Hugging Face ``tokenizer.json`` (a language model's
own tokenizer) and keeps that model's ids. No ``encode`` adds BOS/EOS: the
pipeline frames and pads the ids.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from dataengine.errors import ConfigError, DecodeError

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "HF_TOKENIZER_FILE",
    "PAD_ID",
    "VOCAB_TYPE",
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "VocabTokenizer",
    "decode_report_bytes",
    "decode_text",
    "load_tokenizer",
    "tokenizer_identity",
]

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
_FIRST_TOKEN_ID = 259
VOCAB_TYPE = "medstream-vocab"
HF_TOKENIZER_FILE = "tokenizer.json"
_FIELD = "pipeline.tokenizer"


class Tokenizer(Protocol):
    """What the pipeline needs from a tokenizer. Ids are ints in
    ``[0, vocab_size)``."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """One id per UTF-8 byte; PAD=256, BOS=257, EOS=258; 259 ids."""

    def __init__(self) -> None:
        self.vocab_size = _FIRST_TOKEN_ID
        self.pad_id = PAD_ID
        self.bos_id = BOS_ID
        self.eos_id = EOS_ID

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` (a lone surrogate becomes ``?``)."""
        return list(text.encode("utf-8", errors="replace"))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; specials are dropped, broken UTF-8 becomes U+FFFD."""
        _check_ids(ids, self.vocab_size)
        return bytes(i for i in ids if i < PAD_ID).decode("utf-8", errors="replace")


class VocabTokenizer:
    """Byte ids plus a list of multi-byte tokens (ids 259 + index).

    ``encode`` matches greedily: at each position the longest token whose
    UTF-8 bytes start there wins, else the single byte; O(len * longest
    token) through a byte trie. ``source`` names the vocabulary in errors.
    """

    def __init__(self, tokens: Sequence[str], *, source: str = "tokens") -> None:
        self.vocab_size = _FIRST_TOKEN_ID + len(tokens)
        self.pad_id = PAD_ID
        self.bos_id = BOS_ID
        self.eos_id = EOS_ID
        self._pieces = [bytes([b]) for b in range(256)] + [b""] * 3
        # Trie over token bytes: node -> {byte: child node}, and node -> token id or -1.
        self._children: list[dict[int, int]] = [{}]
        self._token_at = [-1]
        first_index: dict[str, int] = {}
        for index, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise ConfigError(
                    _FIELD, f"{source}: token {index} must be a non-empty string, got {token!r}"
                )
            if token in first_index:
                raise ConfigError(
                    _FIELD,
                    f"{source}: token {index} ({token!r}) repeats token {first_index[token]}",
                )
            first_index[token] = index
            piece = token.encode("utf-8", errors="replace")
            self._pieces.append(piece)
            self._insert(piece, _FIRST_TOKEN_ID + index)

    @classmethod
    def from_file(cls, path: Path) -> VocabTokenizer:
        """Load ``{"type": "medstream-vocab", "tokens": [...]}``; ``ConfigError``
        naming the path and the problem otherwise."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                _FIELD, f"{path}: no such file (expected 'byte' or a {VOCAB_TYPE} JSON file)"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(_FIELD, f"{path}: cannot read a JSON vocabulary: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("type") != VOCAB_TYPE:
            found = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
            raise ConfigError(_FIELD, f"{path}: 'type' must be {VOCAB_TYPE!r}, got {found!r}")
        tokens = doc.get("tokens")
        if not isinstance(tokens, list):
            raise ConfigError(_FIELD, f"{path}: 'tokens' must be a list of strings")
        return cls(tokens, source=str(path))

    def _insert(self, piece: bytes, token_id: int) -> None:
        node = 0
        for byte in piece:
            child = self._children[node].get(byte)
            if child is None:
                child = len(self._children)
                self._children[node][byte] = child
                self._children.append({})
                self._token_at.append(-1)
            node = child
        self._token_at[node] = token_id

    def encode(self, text: str) -> list[int]:
        """Greedy longest-match ids of the UTF-8 bytes of ``text``."""
        data = text.encode("utf-8", errors="replace")
        children, token_at = self._children, self._token_at
        ids: list[int] = []
        i, n = 0, len(data)
        while i < n:
            best_id, best_end = data[i], i + 1
            node, j = 0, i
            while j < n:
                node = children[node].get(data[j], -1)
                if node < 0:
                    break
                j += 1
                if token_at[node] >= 0:
                    best_id, best_end = token_at[node], j
            ids.append(best_id)
            i = best_end
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; specials are dropped, broken UTF-8 becomes U+FFFD."""
        _check_ids(ids, self.vocab_size)
        return b"".join(self._pieces[i] for i in ids).decode("utf-8", errors="replace")


# Special tokens looked up by name when no tokenizer_config.json says which
# they are, most common spelling first.
_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "[BOS]")
_EOS_NAMES = ("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]")
_PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>")


class HFTokenizer:
    """A Hugging Face fast tokenizer (``tokenizer.json``, read with the
    ``tokenizers`` library): the ids a language model was trained with.

    ``encode`` adds no special tokens (the file's post-processor is skipped),
    so the pipeline frames every report the same way: BOS, the report, EOS.
    BOS, EOS and PAD are the ``bos_token``, ``eos_token`` and ``pad_token``
    of a ``tokenizer_config.json`` beside the file (as ``save_pretrained``
    writes it), else special tokens found by their usual names (``<s>``,
    ``</s>``, ``<|endoftext|>``, ``<pad>`` ...). A model without a BOS token
    (Qwen, GPT-2) is framed with its EOS in front; one without a PAD token is
    padded with EOS (``text_mask`` marks the real tokens either way).
    ``vocab_size`` is one past the largest id, added tokens included.
    """

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        try:
            self._tok = _Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises bare Exceptions on bad JSON
            raise ConfigError(_FIELD, f"{path}: not a Hugging Face tokenizer.json: {exc}") from exc
        vocab = self._tok.get_vocab(with_added_tokens=True)
        if not vocab:
            raise ConfigError(_FIELD, f"{path}: the tokenizer has an empty vocabulary")
        self.vocab_size = max(vocab.values()) + 1
        named = _configured_specials(path.with_name("tokenizer_config.json"))
        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}

        def find(role: str, names: tuple[str, ...]) -> int | None:
            token = named.get(role)
            if token is None:
                token = next((n for n in names if n in special), None)
            if token is None:
                return None
            token_id = self._tok.token_to_id(token)
            if token_id is None:
                raise ConfigError(_FIELD, f"{path}: {role} {token!r} is not in the vocabulary")
            return int(token_id)

        eos = find("eos_token", _EOS_NAMES)
        if eos is None:
            raise ConfigError(
                _FIELD,
                f"{path}: no end-of-sequence token (set eos_token in a tokenizer_config.json "
                f"beside it, or add one of {', '.join(_EOS_NAMES)} as a special token)",
            )
        bos = find("bos_token", _BOS_NAMES)
        pad = find("pad_token", _PAD_NAMES)
        self.eos_id = eos
        self.bos_id = eos if bos is None else bos
        self.pad_id = eos if pad is None else pad
        self.source = str(path)

    def encode(self, text: str) -> list[int]:
        """The model's ids for ``text``, without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are dropped."""
        _check_ids(ids, self.vocab_size)
        return str(self._tok.decode(list(ids), skip_special_tokens=True))


def _configured_specials(path: Path) -> dict[str, str]:
    """``{"bos_token": "<s>", ...}`` from a ``tokenizer_config.json`` (a value
    is a string, or an object with ``"content"``); empty when there is none."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(_FIELD, f"{path}: cannot read it: {exc}") from exc
    out: dict[str, str] = {}
    for role in ("bos_token", "eos_token", "pad_token"):
        value = doc.get(role) if isinstance(doc, dict) else None
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value:
            out[role] = value
    return out


_BYTE_TOKENIZER = ByteTokenizer()


def load_tokenizer(spec: str) -> Tokenizer:
    """``"byte"``: the shared ``ByteTokenizer``. Anything else: the path of a
    vocabulary file (``medstream-vocab``) or of a Hugging Face
    ``tokenizer.json`` (told apart by content), loaded once per path string
    and cached for the life of the process (edit the file, restart to pick
    it up)."""
    if spec == "byte":
        return _BYTE_TOKENIZER
    if not spec:
        raise ConfigError(
            _FIELD, "must be 'byte' or the path of a vocabulary file or a tokenizer.json"
        )
    return _load_vocab(spec)


@functools.lru_cache(maxsize=32)
def _load_vocab(path: str) -> Tokenizer:
    if _is_hf_tokenizer(Path(path)):
        return HFTokenizer(Path(path))
    return VocabTokenizer.from_file(Path(path))


def _is_hf_tokenizer(path: Path) -> bool:
    """A JSON object with a ``model`` section (every ``tokenizer.json`` has
    one) and no medstream ``type``; anything else is read as a vocabulary
    file, whose loader reports what is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "model" in doc and doc.get("type") != VOCAB_TYPE


@functools.lru_cache(maxsize=32)
def tokenizer_identity(spec: str) -> str:
    """What a tokenizer *is*, independent of where its file lies: ``"byte"``,
    or ``"vocab:"`` + the first 16 hex digits of the file's SHA-256 (read once
    per path string, like ``load_tokenizer``); for a ``tokenizer.json``,
    ``"hf:"`` + 16 hex digits of the SHA-256 over the file and its BOS, EOS
    and PAD ids (which a ``tokenizer_config.json`` beside it may choose).
    Prefix keys use it, so a prepared view made with a copy of the
    vocabulary on another host matches."""
    if spec == "byte":
        return spec
    try:
        data = Path(spec).read_bytes()
    except OSError as exc:
        raise ConfigError(_FIELD, f"cannot read vocabulary file {spec!r}: {exc}") from None
    if not _is_hf_tokenizer(Path(spec)):
        return f"vocab:{hashlib.sha256(data).hexdigest()[:16]}"
    tok = load_tokenizer(spec)
    specials = f"\0bos={tok.bos_id},eos={tok.eos_id},pad={tok.pad_id}".encode()
    return f"hf:{hashlib.sha256(data + specials).hexdigest()[:16]}"


def decode_report_bytes(data: bytes) -> str:
    """Report file bytes -> text; see ``decode_text``."""
    return decode_text(data)[0]


def decode_text(data: bytes, *, label: str = "report") -> tuple[str, str]:
    """Text bytes -> ``(text, encoding name)``, by deterministic rules:

    1. A byte-order mark selects its codec: UTF-8 (``"utf-8-sig"``), UTF-32
       or UTF-16, either byte order; the mark is dropped. A wrong mark (bytes
       that do not decode in that codec) is a ``DecodeError``.
    2. Bytes that are strict UTF-8 are UTF-8 (``"utf-8"``; pure ASCII too).
    3. Otherwise, bytes that decode strictly as GB18030 (a superset of GBK and
       GB2312) are accepted as ``"gb18030"`` when the text is plausibly
       Chinese: at least half of its non-ASCII characters are common (GB2312
       punctuation or level-1 hanzi), or charset-normalizer also guesses a GB
       encoding (traditional characters in GBK). Latin-1/cp1252 text often
       decodes as GB18030 too, but into rare ideographs: this check refuses
       it.
    4. Anything else is a ``DecodeError`` naming the first byte offset that is
       not UTF-8, and charset-normalizer's guess, if any. There is no
       Latin-1 fallback: a guessed codec would silently mangle the text.
       UTF-16 without a byte-order mark is not recognized.
    """
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), name
            except UnicodeDecodeError as exc:
                offset = exc.start + len(bom)
                raise DecodeError(
                    f"{label}: starts with a {name} byte-order mark but is not valid {name} "
                    f"at byte {offset}: {exc.reason}"
                ) from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        text = None
    guess = _charset_guess(data)
    if text is not None and (_mostly_common_chinese(text) or guess in _GB_NAMES):
        return text, "gb18030"
    hint = f"; charset-normalizer guesses {guess}" if guess else ""
    bad = data[utf8_error.start]
    raise DecodeError(
        f"{label}: not UTF-8 (byte 0x{bad:02x} at offset {utf8_error.start}: "
        f"{utf8_error.reason}) and not GB18030/GBK Chinese text{hint}; re-encode it as UTF-8"
    ) from utf8_error


_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),  # before UTF-16 LE: same first 2 bytes
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
_GB_NAMES = ("gb18030", "gbk", "gb2312", "cp936", "hz")


def _mostly_common_chinese(text: str) -> bool:
    """At least half of the non-ASCII characters are GB2312 punctuation and
    symbols (rows 1-9) or its level-1 hanzi (the 3,755 most frequent, rows
    16-55). Latin-1 letters read as GB18030 land elsewhere: an accented
    lower-case letter starts a byte pair beyond row 55 ("öß" -> 鲞, row 70)."""
    wide = [c for c in text if ord(c) > 0x7F]
    if not wide:
        return True
    common = 0
    for c in wide:
        try:
            lead = c.encode("gb2312")[0]
        except UnicodeEncodeError:
            continue
        common += 0xA1 <= lead <= 0xA9 or 0xB0 <= lead <= 0xD7
    return 2 * common >= len(wide)


def _charset_guess(data: bytes) -> str | None:
    """charset-normalizer's best guess (lower-case codec name), or None."""
    import charset_normalizer  # ~50 ms; only undecodable input pays it

    best = charset_normalizer.from_bytes(data).best()
    return str(best.encoding).lower() if best is not None else None


def _check_ids(ids: Sequence[int], vocab_size: int) -> None:
    bad = next((i for i in ids if not 0 <= i < vocab_size), None)
    if bad is not None:
        raise ValueError(f"token id {bad} outside [0, {vocab_size})")

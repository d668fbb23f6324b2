"""Sentences and passages from a page's text layer (PDF text or OCR), for the dense text lane and the extractive
answerer.

PDF text layers are not prose: pdfium marks a word hyphenated at a line end with U+FFFE, sentences wrap over
lines, headings and bullet items sit on lines of their own, and tables come out as runs of short cells with no
sentence punctuation. ``split_sentences`` repairs the first two, keeps the other two apart from the prose, and cuts
run-ons (tables) into pieces of at most ``MAX_SENTENCE_WORDS`` words. Words are whitespace-separated tokens.
"""

from __future__ import annotations

import math
import re

MAX_SENTENCE_WORDS = 60
HEADING_WORDS = 6  # a line this short, without end punctuation, followed by a long line, is a heading

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # broken font encodings; \t, \n kept for now
_SOFT_HYPHEN = re.compile(r"[\ufffe\u00ad][ \t]*\n?[ \t]*")  # pdfium: U+FFFE; PDF/HTML: U+00AD
# "inter-\nnational" and "inter\n-\nnational" -> "international"; a compound such as "fact-\nchecking" is joined
# too, which no rule without a dictionary can tell apart. "Covid-\n19", "4-\nhop" keep their hyphen.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])(?:[ \t]*\n[ \t]*)?-[ \t]*\n[ \t]*(?=[a-z])")
_COMPOUND_BREAK = re.compile(r"(?<=\w)-[ \t]*\n[ \t]*(?=\w)")
_BULLET = re.compile(r"^[•●▪■□◦○·‣⁃∙➢►▸✓✔\uf0a7\uf0b7\uf0d8\uf0fc*]+\s*|^[-–—]\s+")
_LIST_ITEM = re.compile(r"^(?:\(?\d{1,3}[.)]?|\(?[a-z][.)]|[IVX]{1,4}\.)\s+[A-Z]")  # "2 Related Work", "40. It"
_MARKER = re.compile(r"\(?(?:\d{1,3}|[a-zA-Z]|[IVXivx]{1,4})")  # "1." of a numbered item is no sentence
_STARTS_SENTENCE = re.compile(r"^[\"'“‘(\[]?[A-Z0-9]")
_END = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "al approx ca cf co corp dept dr e.g eq eqs etc fig figs i.e inc jr ltd mr mrs ms no nos p pp prof sec sr st "
    "tab u.k u.s vol vs".split()
)


def split_sentences(text: str) -> list[str]:
    """Sentences of a page's text layer, in reading order, each at most ``MAX_SENTENCE_WORDS`` words.

    Repairs words hyphenated at a line end ("inter-\\nnational" -> "international"; pdfium's U+FFFE marker
    likewise) and joins lines wrapped inside a sentence. A blank line, a bullet or numbered item (the bullet
    glyph is dropped) and a heading (a short line without end punctuation followed by a long one) start a new
    unit; units are cut into sentences at ``.``, ``!`` or ``?`` followed by a capital or digit, except after
    common abbreviations ("e.g.", "Fig.", "et al.") and initials. A longer run (typically a table) is cut into
    near-equal pieces. Returns ``[]`` for empty or whitespace-only text.
    """
    sentences: list[str] = []
    for unit in _units(_clean(text)):
        for sentence in _split_unit(unit):
            sentences.extend(_cap_words(sentence, MAX_SENTENCE_WORDS))
    return sentences


def split_passages(text: str, *, max_words: int = 100, overlap_sentences: int = 1) -> list[str]:
    """Sentence-aligned passages of ``text`` of at most ``max_words`` words each, for the dense text lane.

    Each passage is a run of consecutive sentences (``split_sentences``; a sentence longer than ``max_words`` is
    first cut into near-equal pieces); consecutive passages share ``overlap_sentences`` sentences, fewer when a
    passage holds no more than that. Returns ``[]`` for empty or whitespace-only text.

    Raises:
        ValueError: ``max_words`` < 1 or ``overlap_sentences`` < 0.
    """
    if max_words < 1 or overlap_sentences < 0:
        raise ValueError(f"need max_words >= 1 and overlap_sentences >= 0, got {max_words}, {overlap_sentences}")
    sentences = [piece for s in split_sentences(text) for piece in _cap_words(s, max_words)]
    lengths = [len(s.split()) for s in sentences]
    passages: list[str] = []
    start = 0
    while start < len(sentences):
        end, words = start + 1, lengths[start]
        while end < len(sentences) and words + lengths[end] <= max_words:
            words += lengths[end]
            end += 1
        passages.append(" ".join(sentences[start:end]))
        if end == len(sentences):
            break
        start = max(end - overlap_sentences, start + 1)
    return passages


def _clean(text: str) -> str:
    """Text with one kind of line break, no control characters, and hyphenated line breaks joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").replace("\x0c", "\n")
    text = _CONTROL.sub(" ", text)
    text = _SOFT_HYPHEN.sub("", text)
    return _COMPOUND_BREAK.sub("-", _HYPHEN_BREAK.sub("", text))


def _units(text: str) -> list[str]:
    """Lines joined into units (paragraphs, bullet items, headings, table runs), whitespace collapsed."""
    units: list[list[str]] = []
    previous = ""  # the previous line of the current unit; "" after a blank line or a lone bullet glyph
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        bullet = _BULLET.match(line)
        if bullet:
            line = line[bullet.end() :]
        if not line:
            previous = ""
            continue
        if not previous or bullet or _LIST_ITEM.match(line) or _is_heading(previous, line):
            units.append([])
        units[-1].append(line)
        previous = line
    return [" ".join(lines) for lines in units]


def _is_heading(previous: str, line: str) -> bool:
    """Whether ``previous`` reads as a heading above ``line``: short, no end punctuation, and ``line`` a long
    line that starts like a sentence (two short lines in a row are more likely table cells, kept together)."""
    return (
        len(previous.split()) <= HEADING_WORDS
        and previous[-1] not in ".!?:;,-"
        and len(line.split()) > HEADING_WORDS
        and _STARTS_SENTENCE.match(line) is not None
    )


def _split_unit(unit: str) -> list[str]:
    """Cut a unit into sentences after end punctuation, skipping abbreviations, initials and item numbers."""
    sentences, start = [], 0
    for match in _END.finditer(unit):
        head = unit[start : match.start()]
        word = (head.rsplit(maxsplit=1)[-1:] or [""])[0].lstrip("([\"'“‘").lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or _MARKER.fullmatch(head.strip()):
            continue
        sentences.append(unit[start : match.end()].strip())
        start = match.end()
    sentences.append(unit[start:].strip())
    return [s for s in sentences if s]


def _cap_words(sentence: str, max_words: int) -> list[str]:
    """``sentence`` cut into the fewest near-equal pieces of at most ``max_words`` words."""
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    n = math.ceil(len(words) / max_words)
    size = math.ceil(len(words) / n)
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]

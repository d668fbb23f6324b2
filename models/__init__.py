"""The ML stages, pure: retrieval (ColQwen2, MaxSim, pooling, text lanes), rerank (MonoQwen2-VL) and answers
(Qwen2-VL or extractive), with batching and loading. Imports only :mod:`pageqa`; no database code."""

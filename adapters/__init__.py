"""userfm.adapters: stage 2, user embeddings into a frozen LLM.

Perceiver resampler, soft prompts, gated cross-attention, LoRA and adapter fine-tuning arrive
with the adapter issue. Installed as ``userfm.adapters`` (never as a top-level ``adapters``
package: that name belongs to an existing PyPI library).
"""

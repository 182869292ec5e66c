"""userfm.api: the embedding API (`UserEncoder.embed` / `iter_embed` -> `UserEmbeddings`) and
model cards. Imports the encoder and data types only, never a training stage."""

from userfm.api.embed import embed, iter_embed
from userfm.api.embeddings import UserEmbeddings
from userfm.api.model_card import render_model_card

__all__ = ["UserEmbeddings", "embed", "iter_embed", "render_model_card"]

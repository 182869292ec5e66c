"""`RecentEvents`: the R most recent events of a history, one LLM-width vector each.

A Perceiver summary answers "what does this user like" but blurs "what came last": the
encoder probe on its mean state is at chance on the sequence-understanding questions (the
genre of the n-th most recent item, how many of the last k share a genre), although every
per-event state holds its own item (issue 17). These vectors follow the K latents in the
soft prompt, oldest first, so the LLM reads the latest events in their order, like the
per-patch tokens of LLaVA next to a pooled summary.

With ``text_dim`` each vector also carries its event's item text (the encoder's saved
sentence-encoder vector, projected; issue 33 §4), so the LLM reads what the item *is* in a
space that does not depend on the encoder having learnt the item.
"""

from __future__ import annotations

import torch
from torch import nn

from userfm.errors import ConfigError, check_int


class RecentEvents(nn.Module):
    """(B, T, D) right-padded encoder states -> (B, R, H): the last R real events, oldest first.

    A history with fewer than R events fills its first slots with a learned "no event" vector.

    Args:
        dim: width D of the encoder states.
        out_dim: width H of the LLM's hidden states.
        count: R, the number of most recent events kept.
        text_dim: E, the width of per-event item text vectors added to each event's vector
            (normalised and projected to H); 0: states only.

    Example:
        >>> r = RecentEvents(dim=8, out_dim=16, count=3)
        >>> mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
        >>> r(torch.randn(2, 4, 8), mask).shape
        torch.Size([2, 3, 16])
    """

    def __init__(self, *, dim: int, out_dim: int, count: int, text_dim: int = 0):
        super().__init__()
        self.count = check_int("count", count, minimum=1)
        self.text_dim = check_int("text_dim", text_dim, minimum=0)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)
        self.empty = nn.Parameter(torch.randn(out_dim) * out_dim**-0.5)
        if self.text_dim:
            self.text_norm = nn.LayerNorm(self.text_dim)
            self.text_proj = nn.Linear(self.text_dim, out_dim, bias=False)
        else:
            self.text_norm = self.text_proj = None

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor, text: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Project the last ``count`` real events.

        Args:
            states: (B, T, D) encoder states.
            mask: (B, T) bool, True at real events, which come first (right padding, as
                `userfm.data.collate.collate` makes).
            text: (B, T, E) item text vectors of the same events; required exactly when the
                module was built with ``text_dim`` E > 0.

        Returns:
            (B, R, out_dim), oldest of the R first.

        Raises:
            ConfigError: a row's real events are not a prefix (left padding or holes), or
                ``text`` is missing, unexpected or of the wrong shape.
        """
        B, T, D = states.shape
        mask = mask.bool()
        lengths = mask.sum(dim=1)  # (B,)
        steps = torch.arange(T, device=mask.device)
        if not torch.equal(mask, steps[None, :] < lengths[:, None]):
            raise ConfigError(
                "RecentEvents reads right-padded histories (real events first, then padding); "
                "build the batch with `userfm.data.collate.collate`"
            )
        offsets = torch.arange(-self.count, 0, device=mask.device)  # (R,): -R .. -1
        index = lengths[:, None] + offsets[None, :]  # (B, R)
        present = index >= 0
        index = index.clamp(min=0)[..., None]  # (B, R, 1)
        picked = states.gather(1, index.expand(B, self.count, D))
        out = self.proj(self.norm(picked))  # (B, R, H)
        if self.text_proj is not None:
            if text is None or tuple(text.shape) != (B, T, self.text_dim):
                got = None if text is None else tuple(text.shape)
                raise ConfigError(
                    f"RecentEvents(text_dim={self.text_dim}) needs per-event text vectors of "
                    f"shape (B, T, E) = {(B, T, self.text_dim)}, got {got}"
                )
            words = text.to(states.dtype).gather(1, index.expand(B, self.count, self.text_dim))
            out = out + self.text_proj(self.text_norm(words))  # (B, R, H)
        elif text is not None:
            raise ConfigError("RecentEvents was built without text_dim: pass no `text`")
        return torch.where(present[..., None], out, self.empty.to(out.dtype))

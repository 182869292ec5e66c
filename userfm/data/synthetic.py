"""Synthetic interaction logs with known structure: the embedded default for the quickstart and tests.

The generative story (all vectorised numpy, deterministic given ``seed``):

* **catalogue**: ``num_items`` items in ``num_categories`` categories (readable names such as
  ``outdoor`` or ``kitchen``), with titles such as ``"Blue Harbor Lamp"``. Inside a category,
  item popularity follows a Zipf law with exponent ``zipf_a``; categories themselves are
  Zipf-popular with exponent ``category_zipf_a``.
* **users**: each has ``interests_per_user`` categories (drawn by category popularity) with
  Dirichlet weights. The weights **drift** from a start mixture to an end mixture over the
  user's history (``drift`` = 0: static interests, 1: fully replaced by the end).
* **sessions**: a history is cut into sessions (geometric, mean ``mean_session_length``
  events). A session follows one interest (each event stays in it with probability
  ``session_focus``); events in a session are seconds to minutes apart, sessions are hours
  to days apart.
* **series**: with probability ``series_prob`` the next event in a session continues a series:
  the item after the previous one in the same category (item ``k`` -> ``k + 1``, wrapping).
* **actions**: ``view`` / ``click`` / ``buy`` with probabilities ``action_probs``.
* **explorers** (``niche_users``, 0 by default): this fraction of users draws items inside a
  category uniformly rather than by popularity, so the catalogue's tail has regular users of
  its own (their series, item ``k`` -> ``k + 1``, run through tail items too):
  `SyntheticConfig.long_tail` is such a log, made to measure head/tail trade-offs (DRO), with
  hundreds of test targets among the least popular third of the items.

So the next item depends on the user's current interest and on the previous item: a sequence
model clearly beats most-popular, yet the task is far from deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from userfm.errors import ConfigError, check_fields, check_int, field_error, is_number

__all__ = ["SyntheticConfig", "generate_synthetic_log", "write_synthetic_log", "CATEGORY_NAMES"]

#: category name -> product noun used in titles
CATEGORY_NAMES: dict[str, str] = {
    "home": "Lamp",
    "outdoor": "Tent",
    "kitchen": "Kettle",
    "books": "Novel",
    "music": "Album",
    "garden": "Planter",
    "toys": "Puzzle",
    "sports": "Ball",
    "beauty": "Serum",
    "office": "Notebook",
    "pets": "Leash",
    "games": "Board Game",
    "travel": "Backpack",
    "fitness": "Yoga Mat",
    "tools": "Wrench",
    "fashion": "Jacket",
    "baby": "Blanket",
    "auto": "Charger",
    "crafts": "Yarn Kit",
    "electronics": "Speaker",
    "movies": "Box Set",
    "health": "Vitamins",
    "grocery": "Tea",
    "jewelry": "Necklace",
}
_ADJECTIVES = (
    "Blue", "Golden", "Silver", "Quiet", "Bright", "Wild", "Gentle", "Rustic", "Crimson", "Misty",
    "Swift", "Lucky", "Cosy", "Bold", "Amber", "Velvet", "Northern", "Sunny", "Hidden", "Royal",
    "Little", "Grand", "Midnight", "Emerald", "Coral", "Ivory", "Urban", "Classic", "Electric",
    "Autumn", "Spring", "Arctic",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Forest", "River", "Meadow", "Summit", "Canyon", "Island", "Valley", "Garden",
    "Comet", "Falcon", "Maple", "Willow", "Cedar", "Orchid", "Pebble", "Lantern", "Compass",
    "Anchor", "Beacon", "Prairie", "Glacier", "Lagoon", "Thunder", "Breeze", "Ember", "Shadow",
    "Horizon", "Cascade", "Aurora", "Fox", "Otter",
)  # fmt: skip
_ACTIONS = ("view", "click", "buy")
_EPOCH_2023 = 1_672_531_200  # 2023-01-01T00:00:00Z


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic log (see the module docstring for the generative story).

    Args:
        num_users: users to generate.
        num_items: catalogue size.
        num_categories: item categories (<= num_items).
        interests_per_user: categories each user is interested in (<= num_categories).
        mean_events: mean events per user (log-normal lengths, clipped).
        max_events: longest history.
        min_events: shortest history (>= 2).
        zipf_a: Zipf exponent of item popularity inside a category (> 0).
        category_zipf_a: Zipf exponent of category popularity (>= 0; 0 = uniform).
        mean_session_length: mean events per session (>= 1).
        session_gap_hours: mean gap between sessions, in hours.
        event_gap_seconds: mean gap between events of a session, in seconds.
        session_focus: probability that an event follows its session's interest.
        series_prob: probability that an event continues the previous item's series.
        drift: how far interests move from the start to the end of a history, in [0, 1].
        action_probs: probabilities of view, click, buy (sum to 1).
        start_time: unix time of the earliest possible first event.
        start_spread_days: first events are spread uniformly over this many days.
        niche_users: fraction of users who draw items inside a category uniformly rather than
            by popularity (explorers of the tail), in [0, 1].
        seed: random seed; equal configs give identical logs.
    """

    num_users: int = 2000
    num_items: int = 1000
    num_categories: int = 20
    interests_per_user: int = 3
    mean_events: float = 50.0
    max_events: int = 200
    min_events: int = 2
    zipf_a: float = 1.1
    category_zipf_a: float = 0.8
    mean_session_length: float = 6.0
    session_gap_hours: float = 30.0
    event_gap_seconds: float = 90.0
    session_focus: float = 0.85
    series_prob: float = 0.35
    drift: float = 0.5
    action_probs: tuple[float, float, float] = (0.75, 0.2, 0.05)
    start_time: int = _EPOCH_2023
    start_spread_days: float = 180.0
    niche_users: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_probs", tuple(float(p) for p in self.action_probs))
        for name in (
            "num_users",
            "num_items",
            "num_categories",
            "interests_per_user",
            "max_events",
        ):
            check_int(f"SyntheticConfig.{name}", getattr(self, name), minimum=1)
        check_int("SyntheticConfig.min_events", self.min_events, minimum=2)
        check_int("SyntheticConfig.seed", self.seed, minimum=0)
        check_int("SyntheticConfig.start_time", self.start_time, minimum=0)
        if self.num_categories > self.num_items:
            raise field_error(
                "SyntheticConfig.num_categories",
                self.num_categories,
                f"at most num_items={self.num_items}",
            )
        if self.interests_per_user > self.num_categories:
            raise field_error(
                "SyntheticConfig.interests_per_user",
                self.interests_per_user,
                f"at most num_categories={self.num_categories}",
            )
        if self.max_events < self.min_events:
            raise field_error(
                "SyntheticConfig.max_events",
                self.max_events,
                f"at least min_events={self.min_events}",
            )
        if not self.min_events <= self.mean_events <= self.max_events:
            raise field_error(
                "SyntheticConfig.mean_events",
                self.mean_events,
                f"between min_events and max_events={self.max_events}",
            )
        for name, low in (
            ("zipf_a", 0.0),
            ("session_gap_hours", 0.0),
            ("event_gap_seconds", 0.0),
            ("start_spread_days", -1e-12),
        ):
            value = getattr(self, name)
            if not is_number(value) or not value > low:
                raise field_error(
                    f"SyntheticConfig.{name}",
                    value,
                    "a positive number" if low == 0 else "a number >= 0",
                )
        if not is_number(self.category_zipf_a) or self.category_zipf_a < 0:
            raise field_error(
                "SyntheticConfig.category_zipf_a", self.category_zipf_a, "a number >= 0"
            )
        if not is_number(self.mean_session_length) or self.mean_session_length < 1:
            raise field_error(
                "SyntheticConfig.mean_session_length", self.mean_session_length, "a number >= 1"
            )
        for name in ("session_focus", "series_prob", "drift", "niche_users"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value <= 1:
                raise field_error(f"SyntheticConfig.{name}", value, "a probability in [0, 1]")
        p = self.action_probs
        if len(p) != len(_ACTIONS) or any(x < 0 for x in p) or abs(sum(p) - 1) > 1e-6:
            raise field_error(
                "SyntheticConfig.action_probs",
                p,
                f"{len(_ACTIONS)} non-negative probabilities of {_ACTIONS} summing to 1",
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["action_probs"] = list(self.action_probs)
        return d

    @classmethod
    def long_tail(cls, **overrides: object) -> SyntheticConfig:
        """A log made for head/tail trade-offs (issue 20 §3): 6,000 users over 3,000 items, a
        steep popularity law (``zipf_a`` 1.3) for half of the users and uniform draws inside
        their categories for the other half, so that the least popular third of the
        catalogue holds at least 500 of the 6,000 leave-one-out test targets (tested)."""
        preset = dict(num_users=6000, num_items=3000, zipf_a=1.3, niche_users=0.5)
        return cls(**{**preset, **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticConfig:
        check_fields("synthetic", d, (f.name for f in fields(cls)), "SyntheticConfig")
        return cls(**d)


def _category_names(n: int) -> tuple[list[str], list[str]]:
    base = list(CATEGORY_NAMES)
    names, products = [], []
    for c in range(n):
        name = base[c % len(base)]
        names.append(name if c < len(base) else f"{name}-{c // len(base) + 1}")
        products.append(CATEGORY_NAMES[name])
    return names, products


def _segment_cumsum(values: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each segment start (``owner``: segment of every element)."""
    cs = np.cumsum(values)
    return cs - (cs[starts] - values[starts])[owner]


def generate_synthetic_log(config: SyntheticConfig | None = None) -> pd.DataFrame:
    """Generate a synthetic event log.

    Args:
        config: generator parameters (default `SyntheticConfig()`: 2000 users, 1000 items).

    Returns:
        A DataFrame with columns ``user``, ``item`` (zero-padded string ids such as ``u0007``
        / ``i042``), ``timestamp`` (int64 unix seconds), ``action`` (view/click/buy), ``category`` (e.g.
        ``outdoor``) and ``title`` (e.g. ``Blue Harbor Tent``), sorted by user and time.
        Every user has between ``min_events`` and ``max_events`` events.

    Example:
        >>> df = generate_synthetic_log(SyntheticConfig(num_users=10, num_items=50, seed=1))
        >>> list(df.columns)
        ['user', 'item', 'timestamp', 'action', 'category', 'title']
    """
    cfg = config if config is not None else SyntheticConfig()
    if not isinstance(cfg, SyntheticConfig):
        raise ConfigError(f"config must be a SyntheticConfig, got {type(cfg).__name__}")
    rng = np.random.default_rng(cfg.seed)
    U, n_items, C, K = cfg.num_users, cfg.num_items, cfg.num_categories, cfg.interests_per_user

    # ---- catalogue: contiguous category blocks; Zipf popularity by rank inside a block ----
    cat_size = np.full(C, n_items // C, dtype=np.int64)
    cat_size[: n_items % C] += 1
    cat_start = np.r_[0, np.cumsum(cat_size)[:-1]]
    item_cat = np.repeat(np.arange(C), cat_size)
    rank = np.arange(n_items) - cat_start[item_cat] + 1
    weight = rank.astype(np.float64) ** -cfg.zipf_a
    cdf = np.cumsum(weight)
    cat_total = np.add.reduceat(weight, cat_start)
    cat_before = np.r_[0.0, np.cumsum(cat_total)[:-1]]
    within_cdf = (cdf - cat_before[item_cat]) / cat_total[item_cat]  # in (0, 1] per category
    global_cdf = item_cat + within_cdf  # strictly increasing; category c occupies (c, c + 1]
    global_cdf[cat_start + cat_size - 1] = np.arange(C) + 1.0  # exact block ends

    # ---- users: interests (Gumbel top-k by category popularity), start/end weights ----
    cat_pop = (np.arange(C) + 1.0) ** -cfg.category_zipf_a
    keys = np.log(cat_pop / cat_pop.sum()) + rng.gumbel(size=(U, C))
    interests = np.argsort(-keys, axis=1)[:, :K]  # (U, K)
    w_start = rng.dirichlet(np.ones(K), size=U)
    w_end = rng.dirichlet(np.ones(K), size=U)

    # ---- history lengths (log-normal), event -> user ----
    sigma = 0.8
    raw = rng.lognormal(np.log(cfg.mean_events) - sigma**2 / 2, sigma, size=U)
    lengths = np.clip(np.rint(raw), cfg.min_events, cfg.max_events).astype(np.int64)
    N = int(lengths.sum())
    user_start = np.r_[0, np.cumsum(lengths)[:-1]]
    owner = np.repeat(np.arange(U), lengths)
    pos = np.arange(N) - user_start[owner]
    progress = pos / np.maximum(lengths[owner] - 1, 1)

    def sample_interest(idx: np.ndarray) -> np.ndarray:
        """Interest category of the events ``idx`` from the drifted weights."""
        p = cfg.drift * progress[idx, None]
        w = (1 - p) * w_start[owner[idx]] + p * w_end[owner[idx]]
        k = (rng.random(len(idx))[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
        return interests[owner[idx], np.minimum(k, K - 1)]

    # ---- sessions ----
    session_start = rng.random(N) < 1.0 / cfg.mean_session_length
    session_start[user_start] = True
    session_id = np.cumsum(session_start) - 1
    starts_idx = np.flatnonzero(session_start)
    session_cat = sample_interest(starts_idx)
    focused = rng.random(N) < cfg.session_focus
    event_cat = np.where(focused, session_cat[session_id], sample_interest(np.arange(N)))

    # ---- items: Zipf draw, or the next item of the running series ----
    drawn = np.searchsorted(global_cdf, event_cat + (1.0 - rng.random(N)), side="left")
    drawn = np.minimum(drawn, cat_start[event_cat] + cat_size[event_cat] - 1)
    # explorers draw from streams of their own: with niche_users = 0 the log is as it was
    explore = np.random.default_rng([cfg.seed, 1])
    niche = explore.random(U) < cfg.niche_users  # (U,)
    uniform = cat_start[event_cat] + (explore.random(N) * cat_size[event_cat]).astype(np.int64)
    drawn = np.where(niche[owner], uniform, drawn)
    cont = (rng.random(N) < cfg.series_prob) & ~session_start
    run_start = np.maximum.accumulate(np.where(cont, 0, np.arange(N)))
    offset = np.arange(N) - run_start
    run_cat = event_cat[run_start]
    run_first = drawn[run_start] - cat_start[run_cat]
    item = cat_start[run_cat] + (run_first + offset) % cat_size[run_cat]
    event_cat = run_cat

    # ---- timestamps: seconds-to-minutes inside a session, hours-to-days between sessions ----
    gaps = np.where(
        session_start,
        1800.0 + rng.exponential(cfg.session_gap_hours * 3600.0, size=N),
        1.0 + rng.exponential(cfg.event_gap_seconds, size=N),
    )
    gaps[user_start] = 0.0
    first = cfg.start_time + rng.random(U) * cfg.start_spread_days * 86400.0
    ts = (first[owner] + _segment_cumsum(gaps, user_start, owner)).astype(np.int64)

    # ---- actions, names, titles ----
    action = np.searchsorted(np.cumsum(cfg.action_probs)[:-1], rng.random(N), side="right")
    cat_names, products = _category_names(C)
    n_combo = len(_ADJECTIVES) * len(_NOUNS)
    titles = np.empty(n_items, dtype=object)
    for c in range(C):  # per category: distinct adjective-noun pairs (loop over categories only)
        combos = rng.permutation(n_combo)[np.arange(cat_size[c]) % n_combo]
        suffix = np.arange(cat_size[c]) // n_combo
        start = cat_start[c]
        for j, (combo, s) in enumerate(zip(combos, suffix)):
            name = (
                f"{_ADJECTIVES[combo // len(_NOUNS)]} {_NOUNS[combo % len(_NOUNS)]} {products[c]}"
            )
            titles[start + j] = name if s == 0 else f"{name} {s + 1}"
    item_label = rng.permutation(n_items)  # ids are not in category order
    wu, wi = len(str(U - 1)), len(str(n_items - 1))
    user_names = np.array([f"u{u:0{wu}d}" for u in range(U)], dtype=object)
    item_names = np.array([f"i{j:0{wi}d}" for j in item_label], dtype=object)

    return pd.DataFrame(
        {
            "user": user_names[owner],
            "item": item_names[item],
            "timestamp": ts,
            "action": np.array(_ACTIONS, dtype=object)[action],
            "category": np.array(cat_names, dtype=object)[event_cat],
            "title": titles[item],
        }
    )


def write_synthetic_log(path: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Generate a synthetic log and write it as parquet.

    Args:
        path: the parquet file to write (parent folders are created; an existing file is
            replaced once the new one is complete).
        config: generator parameters (default `SyntheticConfig()`).

    Returns:
        The path written.
    """
    from userfm.outputs import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:  # never a half-written log
        generate_synthetic_log(config).to_parquet(tmp, index=False)
    return path

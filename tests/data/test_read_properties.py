"""Properties of the readers' id and timestamp normalisation, over generated inputs
(issue 18 §6): the same id written differently is the same id, counted; the same instant in
seconds or milliseconds is the same timestamp; a column mixing the two units is refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userfm.data.readers import read_events
from userfm.errors import DataError

T_MIN, T_MAX = 1_000_000_000, 4_000_000_000  # 2001 .. 2096, unix seconds
SETTINGS = settings(max_examples=30, deadline=None)


def _read_csv(lines: list[str]):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.csv"
        path.write_text("user,item,timestamp\n" + "".join(f"{line}\n" for line in lines))
        log = read_events(path)
        return log.to_pandas(), log.stats


#: ways to write the integer id n that the readers normalise to str(n)
SPELLINGS = {
    "plain": "{}",
    "float": "{}.0",
    "padded": "  {} ",
    "padded float": " {}.0",
}


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 10**12), st.sampled_from(sorted(SPELLINGS))),
        min_size=1,
        max_size=12,
    )
)
def test_an_id_written_as_text_float_or_padded_is_one_id_and_counted(rows):
    lines = [f"{SPELLINGS[s].format(n)},{SPELLINGS[s].format(n)},{T_MIN + i}"
             for i, (n, s) in enumerate(rows)]  # fmt: skip
    df, stats = _read_csv(lines)
    expected = sorted(str(n) for n, _ in rows)
    assert sorted(df["user"]) == expected and sorted(df["item"]) == expected
    changed = sum(s != "plain" for _, s in rows)
    assert stats.ids_normalised == 2 * changed  # user and item columns
    assert stats.rows_read == len(rows) == stats.rows_kept + stats.duplicates_dropped


@SETTINGS
@given(
    seconds=st.lists(st.integers(T_MIN, T_MAX), min_size=1, max_size=10),
    unit=st.sampled_from([("s", 1), ("ms", 1000)]),
)
def test_the_same_instants_in_seconds_or_milliseconds_read_the_same(seconds, unit):
    _, scale = unit
    lines = [f"u,i{k},{t * scale}" for k, t in enumerate(seconds)]
    df, _ = _read_csv(lines)
    assert sorted(df["timestamp"]) == sorted(seconds)


@SETTINGS
@given(
    seconds=st.lists(st.integers(T_MIN, T_MAX), min_size=2, max_size=10),
    which=st.data(),
)
def test_a_column_mixing_seconds_and_milliseconds_is_refused(seconds, which):
    in_ms = which.draw(st.sets(st.integers(0, len(seconds) - 1), min_size=1,
                               max_size=len(seconds) - 1))  # fmt: skip
    lines = [f"u,i{k},{t * 1000 if k in in_ms else t}" for k, t in enumerate(seconds)]
    with pytest.raises(DataError, match="timestamp"):
        _read_csv(lines)

import numpy as np
import pytest

from userfm.api.embeddings import UserEmbeddings


def make():
    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float64)
    return UserEmbeddings(["a", "b", "c", "d"], v, {"users": 4})


def test_matrix_is_float32_and_lookup_by_user():
    e = make()
    assert e.to_numpy().dtype == np.float32 and e.to_numpy().shape == (4, 2)
    assert e["c"].tolist() == [0.0, 1.0]
    with pytest.raises(KeyError, match="zz"):
        e["zz"]


def test_nearest_is_cosine_ranked_and_excludes_the_query_user():
    e = make()
    nn = e.nearest("a", k=2)
    assert [u for u, _ in nn] == ["b", "c"]
    assert nn[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1), rel=1e-6)
    by_vector = e.nearest(np.array([0, 2.0]), k=1)
    assert by_vector[0][0] == "c" and by_vector[0][1] == pytest.approx(1.0)
    assert len(e.nearest("a", k=10)) == 3


def test_nearest_errors_are_typed_and_numpy_integers_are_accepted():
    from userfm.errors import ConfigError, UnknownUserError

    e = make()
    assert e.nearest("a", k=np.int64(2)) == e.nearest("a", k=2)
    with pytest.raises(UnknownUserError, match="'zz' has no embedding"):
        e.nearest("zz")
    for bad in (0, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="`k` must be an int >= 1"):
            e.nearest("a", k=bad)


def test_an_empty_history_is_a_data_error():
    from userfm import UserEncoder, read_events
    from userfm.data.log import UserHistory
    from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
    from userfm.errors import DataError

    log = read_events(generate_synthetic_log(SyntheticConfig(num_users=5, num_items=30)))
    model = UserEncoder.from_log(log, hidden_size=8, num_heads=1)
    with pytest.raises(DataError, match="'new' has an empty history"):
        model.embed([UserHistory("new", np.array([], dtype=object))], progress=False)


def test_parquet_and_pandas_round_trip(tmp_path):
    e = make()
    back = UserEmbeddings.from_parquet(e.to_parquet(tmp_path / "e.parquet"))
    assert back.user_ids == e.user_ids
    np.testing.assert_array_equal(back.vectors, e.vectors)
    df = e.to_pandas()
    assert list(df.columns) == ["user", "embedding"] and len(df) == 4


def test_concat_sums_stats_and_keeps_order():
    e = make()
    both = UserEmbeddings.concat([e, UserEmbeddings(["z"], np.ones((1, 2)), {"users": 1})])
    assert both.user_ids[-1] == "z" and both.stats["users"] == 5 and len(both) == 5


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="user ids"):
        UserEmbeddings(["a"], np.zeros((2, 3)))

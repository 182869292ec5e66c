import inspect
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from userfm import EventSchema, UserEmbeddings, UserEncoder, UserHistory, read_events
from userfm.api.embed import embed, iter_embed
from userfm.api.recommend import recommend
from userfm.errors import ConfigError, DataError
from userfm.progress import resolve_progress


def make_events(n_users=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k in range(int(rng.integers(1, 30))):
            rows.append(
                (f"u{u}", f"i{rng.integers(0, 60)}", 1_600_000_000 + 3600 * k, ["a", "b|c"][k % 2])
            )
    return pd.DataFrame(rows, columns=["user", "item", "timestamp", "category"])


@pytest.fixture(scope="module")
def log():
    return read_events(make_events())


@pytest.fixture(scope="module")
def model(log):
    return UserEncoder.from_log(log, seed=0, hidden_size=16, num_heads=2, max_len=16).eval()


def test_embed_returns_one_float32_row_per_user_in_log_order(model, log):
    emb = model.embed(log, batch_size=7, progress=False)
    assert isinstance(emb, UserEmbeddings)
    assert emb.user_ids == [str(u) for u in log.user_ids]
    assert emb.vectors.shape == (log.num_users, 16) and emb.vectors.dtype == np.float32
    assert emb.stats["users"] == log.num_users and emb.stats["events"] == len(log)
    assert emb.stats["truncated_users"] == int((log.lengths > 16).sum()) > 0


def test_batching_and_length_sorting_do_not_change_embeddings(model, log):
    a = model.embed(log, batch_size=1, progress=False).vectors
    b = model.embed(log, batch_size=64, chunk_size=5, progress=False).vectors
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_each_input_kind_gives_the_same_embeddings(model, log):
    df = make_events()
    ref = model.embed(log, progress=False)
    from_df = model.embed(df, progress=False)
    renamed = df.rename(columns={"user": "uid", "item": "iid", "timestamp": "ts"})
    schema = EventSchema(user="uid", item="iid", timestamp="ts", category="category")
    from_schema = model.embed(renamed, schema=schema, progress=False)
    from_stream = model.embed(iter(list(log.iter_histories())), progress=False)
    for other in (from_df, from_schema, from_stream):
        assert other.user_ids == ref.user_ids
        np.testing.assert_allclose(other.vectors, ref.vectors, atol=1e-6)


def test_mapping_of_item_lists_embeds_new_users_and_counts_unknown_items(model):
    emb = model.embed({"new": ["i1", "i2", "never-seen"], "other": ["i3"]}, progress=False)
    assert emb.user_ids == ["new", "other"]
    assert emb.stats["oov_items"] == 1
    assert np.isfinite(emb.vectors).all()


def test_iter_embed_yields_bounded_chunks(model, log):
    parts = list(model.iter_embed(log, batch_size=4, chunk_size=8, progress=False))
    assert all(len(p) <= 8 for p in parts)
    assert sum(len(p) for p in parts) == log.num_users


def test_embed_leaves_training_mode_and_grads_alone(model, log):
    model.train()
    model.embed(log, progress=False)
    assert model.training
    model.eval()
    assert all(p.grad is None for p in model.parameters())


def test_bad_inputs_raise_typed_errors(model):
    with pytest.raises(ConfigError, match="batch_size"):
        model.embed({"u": ["i1"]}, batch_size=0, progress=False)
    with pytest.raises(DataError, match="sequence of item ids"):
        model.embed({"u": "i1"}, progress=False)
    with pytest.raises(TypeError, match="histories must be"):
        model.embed(42, progress=False)
    with pytest.raises(ConfigError, match="no vocabularies"):
        UserEncoder(model.config).embed({"u": ["i1"]}, progress=False)


def test_save_pretrained_writes_the_four_files_and_round_trips_exactly(model, log, tmp_path):
    model.save_pretrained(
        tmp_path / "enc",
        card_data={
            "training_data": {"events": len(log)},
            "metrics": {"HR@10 (full ranking)": 0.25},
        },
    )
    files = sorted(p.name for p in (tmp_path / "enc").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["userfm_version"] and config["model_type"] == "userfm-encoder"
    card = (tmp_path / "enc" / "README.md").read_text()
    assert "HR@10 (full ranking) | 0.2500" in card and "no per-user parameters" in card
    assert "$" not in card  # every template field was filled
    loaded = UserEncoder.from_pretrained(tmp_path / "enc")
    np.testing.assert_array_equal(
        model.embed(log, progress=False).vectors, loaded.embed(log, progress=False).vectors
    )
    assert loaded.vocabs.items.tokens == model.vocabs.items.tokens


def test_load_path_uses_no_pickle(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "enc")

    def forbidden(*a, **k):
        raise AssertionError("pickle-based torch.load used in the load path")

    monkeypatch.setattr(torch, "load", forbidden)
    UserEncoder.from_pretrained(tmp_path / "enc")


def test_the_card_carries_the_hubs_metadata(model, tmp_path):
    """Issue 19 §4: the card is a `huggingface_hub.ModelCard` whose metadata the hub reads
    (it was a template with a hand-written header)."""
    from huggingface_hub import ModelCard

    model.save_pretrained(tmp_path / "enc")
    card = ModelCard.load(tmp_path / "enc" / "README.md")
    assert card.data.library_name == "userfm" and card.data.pipeline_tag == "feature-extraction"
    assert "user-embedding" in card.data.tags
    assert "userfm behaviour encoder" in card.text and "$" not in card.text


@pytest.fixture
def hub(monkeypatch):
    """huggingface_hub's HfApi without the network: records each upload and its files."""
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    uploads: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        files = {p.name: p.read_text() if p.suffix in (".md", ".json") else None
                 for p in folder.iterdir()}  # fmt: skip
        uploads.append(dict(repo_id=repo_id, files=files, token=self.token, **kwargs))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return uploads


def test_push_to_hub_uploads_the_whole_saved_folder_under_its_name(model, tmp_path, hub):
    """transformers' save_pretrained(push_to_hub=True) named the repo after userfm's staging
    folder (".enc.xxxx.part") and uploaded it before vocab.json and the card were written."""
    model.save_pretrained(tmp_path / "my-encoder", push_to_hub=True, token="t", private=True)
    model.push_to_hub("org/other", card_data={"trained": False}, commit_message="v2")
    first, second = hub
    assert first["repo_id"] == "me/my-encoder" and first["token"] == "t"
    assert second["repo_id"] == "org/other" and second["commit_message"] == "v2"
    for upload in hub:
        assert sorted(upload["files"]) == [
            "README.md", "config.json", "model.safetensors", "vocab.json"]  # fmt: skip
        assert "userfm behaviour encoder" in upload["files"]["README.md"]  # our card
    assert "untrained" in second["files"]["README.md"]
    assert (tmp_path / "my-encoder" / "vocab.json").is_file()  # and saved where asked
    with pytest.raises(ConfigError, match="push_to_hub=True"):
        model.save_pretrained(tmp_path / "x", repo_id="me/x")


def test_untrained_card_says_so(model, tmp_path):
    model.save_pretrained(tmp_path / "enc", card_data={"trained": False})
    assert "untrained" in (tmp_path / "enc" / "README.md").read_text()


def test_from_pretrained_on_a_wrong_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        UserEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "damage,file",
    [
        (lambda d: (d / "config.json").write_text("{bad"), "config.json"),
        (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
         "model.safetensors"),
        (lambda d: (d / "vocab.json").write_text("[1,"), "vocab.json"),
        (lambda d: (d / "vocab.json").write_text('{"x": 1}'), "vocab.json"),
    ],
)  # fmt: skip
def test_a_damaged_model_folder_is_a_typed_error_naming_the_file(model, tmp_path, damage, file):
    from userfm.errors import FileFormatError

    model.save_pretrained(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(FileFormatError, match=rf"m/{file} .*damaged"):
        UserEncoder.from_pretrained(tmp_path / "m")


def test_weights_of_other_shapes_than_the_config_name_both_files(model, tmp_path):
    from userfm.errors import FileFormatError

    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "hidden_size": 32}))
    with pytest.raises(FileFormatError, match="other shapes than"):
        UserEncoder.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("change", ["drop", "add"])
def test_weights_missing_or_extra_are_refused_not_reinitialised(model, tmp_path, capfd, change):
    """Issue 18 §1: a model.safetensors without one of the model's tensors loaded with that
    tensor at random (exit 0, only transformers' load table on stderr); an extra tensor was
    ignored. Both are a FileFormatError naming the tensor, and nothing else is printed."""
    from safetensors.torch import load_file, save_file

    from userfm.errors import FileFormatError

    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    tensors = load_file(weights)
    key = sorted(tensors)[-1] if change == "drop" else "extra.weight"
    if change == "drop":
        del tensors[key]
    else:
        tensors[key] = torch.zeros(2)
    save_file(tensors, weights, metadata={"format": "pt"})
    capfd.readouterr()
    with pytest.raises(
        FileFormatError, match=rf"{change == 'drop' and 'missing' or 'unexpected'} keys: {key}"
    ):
        UserEncoder.from_pretrained(tmp_path / "m")
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "Loading weights" not in err


def test_histories_without_time_work_with_a_time_free_model():
    log = read_events(
        pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"]}),
        EventSchema(timestamp=None),
    )
    m = UserEncoder.from_log(log, hidden_size=8, num_heads=1)
    assert m.config.use_time is False
    emb = m.embed([UserHistory("c", np.array(["x", "y"], dtype=object))], progress=False)
    assert emb.vectors.shape == (1, 8)


def test_a_saved_model_reads_new_data_with_the_schema_it_was_trained_with(tmp_path):
    """Issue 18: the DataFrame that trained a side-feature model embeds correctly with no
    schema argument; before, its `category` / `action` columns were ignored without a word."""
    df = make_events().assign(action=lambda d: np.where(d.index % 3 == 0, "click", "buy"))
    df["timestamp"] *= 1000  # milliseconds: the unit is inferred once, then recorded
    schema = EventSchema(action="action", category="category")
    trained = read_events(df, schema)
    assert trained.schema == EventSchema(action="action", category="category", timestamp_unit="ms")
    model = UserEncoder.from_log(trained, seed=0, hidden_size=16, num_heads=2, max_len=16).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = UserEncoder.from_pretrained(tmp_path / "m")
    assert (
        json.loads((tmp_path / "m" / "config.json").read_text())["event_schema"]["action"]
        == "action"
    )
    assert loaded.training_schema() == trained.schema
    want = loaded.embed(df, schema=schema, progress=False)
    got = loaded.embed(df, progress=False)  # no schema: the training one
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
    assert got.stats["users_without_side_features"] == 0
    # an explicit schema still wins: without side features, embedded with a loud warning
    with pytest.warns(UserWarning, match=r"40 of 40 histories have no actions / categories"):
        bare = loaded.embed(df, schema=EventSchema(timestamp_unit="ms"), progress=False)
    assert bare.stats["users_without_side_features"] == 40
    assert not np.allclose(bare.vectors, want.vectors, atol=1e-3)


def test_item_lists_given_to_a_side_feature_model_warn_once_with_the_count(recwarn):
    log = read_events(make_events(), EventSchema(category="category"))
    model = UserEncoder.from_log(log, seed=0, hidden_size=16, num_heads=2, max_len=16).eval()
    model.embed({"new": ["i1", "i2"], "other": ["i3"]}, batch_size=1, chunk_size=1, progress=False)
    warned = [str(w.message) for w in recwarn if "histories have no" in str(w.message)]
    assert len(warned) == 1 and warned[0].startswith("2 of 2 histories have no categories")
    model.embed(log, progress=False)  # histories with their categories: no warning
    assert len([w for w in recwarn if "histories have no" in str(w.message)]) == 1


def test_event_schema_in_the_config_is_checked():
    with pytest.raises(ConfigError, match="event_schema"):
        UserEncoder.from_log(read_events(make_events()), event_schema={"user": 3, "item": "i"})


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_follows_the_terminal_unless_forced(model, capsys, monkeypatch):
    histories = {"u": ["i1", "i2"], "v": ["i3"]}
    model.embed(histories)  # default None; pytest's captured stderr is not a tty
    assert capsys.readouterr().err == ""
    model.embed(histories, progress=True)  # forced on, terminal or not
    err = capsys.readouterr().err
    assert "embedding" in err and "2/2" in err
    model.embed(histories, progress=False)
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    model.embed(histories)  # None on a terminal: a bar
    assert "embedding" in terminal.getvalue()
    assert resolve_progress(None) and not resolve_progress(False)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw / a detached process
    assert resolve_progress(None) is False and resolve_progress(True) is True


@pytest.mark.parametrize(
    ("method", "function"),
    [
        (UserEncoder.embed, embed),
        (UserEncoder.iter_embed, iter_embed),
        (UserEncoder.recommend, recommend),
    ],
)
def test_methods_write_out_the_api_functions_keyword_only_arguments(method, function):
    def options(fn):
        params = list(inspect.signature(fn).parameters.values())[2:]  # after self/model, histories
        assert params and all(p.kind is p.KEYWORD_ONLY for p in params)
        return [(p.name, p.default, p.annotation) for p in params]

    assert options(method) == options(function)
    assert inspect.signature(method).parameters["progress"].default is None

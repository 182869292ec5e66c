"""benchmarks/pretrain_quality.py: rows saved with --out come back unchanged with --reuse, and
a saved row whose configuration differs from the current run's is refused, naming what differs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import pretrain_quality as pq  # noqa: E402

from userfm.eval.retrieval import RetrievalReport  # noqa: E402


def report(ndcg: float) -> RetrievalReport:
    return RetrievalReport(
        metrics={"NDCG@10": ndcg, "macro_recall@10": ndcg / 2},
        protocol="full ranking",
        num_users=3,
        buckets=[{"bucket": 0, "items": 2, "targets": 3, "recall@10": 0.5}],
    )


def saved_file(tmp_path: Path, args, name: str = "ours_dro") -> tuple[Path, dict]:
    """An --out file holding one row of `build_specs(args)`; returns (path, its config)."""
    spec = {s.name: s for s in pq.build_specs(args)}[name]
    config = pq.row_config(args, spec, epochs=100, seeds=[0, 1])
    res = pq.Result(
        spec.label,
        report(0.12),
        fit_s=3.5,
        steps=800,
        train_loss=4.2,
        extra={"dro_weights": [0.7, 0.3]},
        seed_reports=[report(0.12), report(0.10)],
    )
    path = tmp_path / "pq.json"
    path.write_text(json.dumps({name: pq.row_to_dict(res, config)}))
    return path, config


def test_a_saved_row_comes_back_unchanged(tmp_path):
    args = pq.parse_args([])
    path, config = saved_file(tmp_path, args)
    entry = pq.reuse_row(json.loads(path.read_text()), path, "ours_dro", config)
    res = pq.row_from_dict(entry)
    assert res.label == "ours + DRO"
    assert res.per_seed("NDCG@10") == [0.12, 0.10]
    assert res.m("macro_recall@10") == pytest.approx(0.055)
    assert res.bucket_recall() == [0.5]
    assert (res.fit_s, res.steps, res.train_loss) == (3.5, 800, 4.2)
    assert res.extra == {"dro_weights": [0.7, 0.3]}


def test_a_row_made_with_another_configuration_is_refused(tmp_path):
    path, _ = saved_file(tmp_path, pq.parse_args([]))
    changed = pq.parse_args(["--dro-temperature", "5"])
    spec = {s.name: s for s in pq.build_specs(changed)}["ours_dro"]
    config = pq.row_config(changed, spec, epochs=100, seeds=[0, 1])
    with pytest.raises(SystemExit, match=r"module\.dro_temperature differ.*--rows"):
        pq.reuse_row(json.loads(path.read_text()), path, "ours_dro", config)
    more_seeds = pq.row_config(changed, spec, epochs=100, seeds=[0, 1, 2])
    with pytest.raises(SystemExit, match="seeds"):
        pq.reuse_row(json.loads(path.read_text()), path, "ours_dro", more_seeds)


def test_a_row_missing_from_the_file_is_refused(tmp_path):
    path, config = saved_file(tmp_path, pq.parse_args([]))
    with pytest.raises(SystemExit, match="no row 'ours'.*add ours to --rows"):
        pq.reuse_row(json.loads(path.read_text()), path, "ours", config)


def test_rows_are_checked_before_training(tmp_path):
    args = pq.parse_args(["--rows", "ours"])  # a part of the run, with nowhere to keep it
    with pytest.raises(SystemExit, match="--rows without --reuse.*--out FILE"):
        pq.validate(args, pq.build_specs(args))
    pq.validate(*(lambda a: (a, pq.build_specs(a)))(pq.parse_args(
        ["--rows", "sasrec_reference,ours", "--out", str(tmp_path / "part.json")])))  # fmt: skip
    args = pq.parse_args(["--rows", "ours,oops", "--reuse", str(tmp_path / "none.json")])
    with pytest.raises(SystemExit, match=r"unknown row\(s\) \['oops'\].*throughput") as e:
        pq.validate(args, pq.build_specs(args))
    assert "no such file" in str(e.value)


def configured(argv: list[str]) -> pq.Run:
    """A run whose rows and configurations are built (no data read)."""
    args = pq.parse_args(argv)
    seeds = list(range(args.seed, args.seed + (args.seeds or 3)))  # as `setup` derives them
    run = pq.Run(args, start=0.0, epochs=100, repeats=3, tp_epochs=2, seeds=seeds, machine="m")
    pq.configure(run)
    return run


def part_file(path: Path, run: pq.Run, names: list[str]) -> Path:
    """An --out file holding ``names`` as ``run`` would have written them (+ most popular)."""
    rows = {"most_popular": pq.row_to_dict(pq.Result("MostPopular", report(0.05)), None)}
    for name in names:
        rows[name] = pq.row_to_dict(pq.Result(name, report(0.1)), run.configs[name])
    path.write_text(json.dumps(rows))
    return path


def test_a_run_in_parts_is_merged_from_several_files(tmp_path, capsys):
    """Issue 20: the full benchmark (about 3 hours) can run as parts, in parallel or on
    other days, and a later run reads them all; rows in no part are named, not invented."""
    run = configured(["--rows", "sasrec_reference", "--out", str(tmp_path / "a.json")])
    pq.read_reused(run)
    assert run.train == {"sasrec_reference"} and not run.reused
    assert "sasrec_bce" in pq.not_run(run) and "sasrec_reference" not in pq.not_run(run)
    a = part_file(tmp_path / "a.json", run, ["sasrec_reference"])
    b = part_file(tmp_path / "b.json", run, ["sasrec_bce", "sasrec_ce", "ours"])
    merged = configured(["--reuse", str(a), "--reuse", str(b)])
    pq.read_reused(merged)
    assert set(merged.reused) == {"sasrec_reference", "sasrec_bce", "sasrec_ce", "ours"}
    assert merged.train == set()
    assert pq.not_run(merged) == [
        "plus_cl", "plus_dro", "plus_future", "plus_masked", "plus_side", "plus_layers",
        "ours_selected", "ours_dro", "ours_text", "all", "throughput",
    ]  # fmt: skip
    assert "not run (neither trained here nor read): plus_cl" in capsys.readouterr().out
    again = configured(["--reuse", str(a), "--reuse", str(b), "--rows", "ours"])
    pq.read_reused(again)  # a named row is retrained, not read
    assert "ours" not in again.reused and again.train == {"ours"}


def test_a_row_in_two_parts_is_refused(tmp_path):
    run = configured([])
    a = part_file(tmp_path / "a.json", run, ["ours"])
    b = part_file(tmp_path / "b.json", run, ["sasrec_ce", "ours"])
    with pytest.raises(SystemExit, match=r"row 'ours' is in both .*a\.json and .*b\.json"):
        pq.read_reused(configured(["--reuse", str(a), "--reuse", str(b)]))


def seed_part(path: Path, run: pq.Run, name: str, ndcgs: list[float], extra: dict) -> Path:
    """An --out file holding ``name`` trained on ``run.seeds`` with these NDCG@10 values."""
    res = pq.Result(name, report(ndcgs[0]), fit_s=float(run.seeds[0]), extra=extra,
                    seed_reports=[report(x) for x in ndcgs])  # fmt: skip
    path.write_text(json.dumps({name: pq.row_to_dict(res, run.configs[name])}))
    return path


def test_more_seeds_of_a_row_are_merged_from_another_part(tmp_path, capsys):
    """Issue 20: a difference within the seed spread is settled with more seeds, so seeds
    3 and 4 trained later (``--seed 3 --seeds 2``) join seeds 0-2 of the saved rows."""
    first, later = configured([]), configured(["--seed", "3"])
    later.seeds = [3, 4]
    pq.configure(later)
    old = {"selected_epoch": [70, 90, 30], "dro_weights": [0.7, 0.3]}  # no another_user
    new = {"selected_epoch": [40, 60], "another_user": [{"NDCG@10": 0.02}] * 2}
    b = seed_part(tmp_path / "b.json", later, "ours_selected", [0.13, 0.14], new)
    a = seed_part(tmp_path / "a.json", first, "ours_selected", [0.10, 0.11, 0.12], old)
    run = configured(["--reuse", str(b), "--reuse", str(a), "--seeds", "5"])
    run.seeds = [0, 1, 2, 3, 4]
    pq.configure(run)
    pq.read_reused(run)
    res = pq.row_from_dict(run.reused["ours_selected"])
    assert res.per_seed("NDCG@10") == [0.10, 0.11, 0.12, 0.13, 0.14]  # seed order
    assert res.fit_s == 0.0  # the lowest seed's fit
    assert res.extra == {"selected_epoch": [70, 90, 30, 40, 60], "dro_weights": [0.7, 0.3]}
    assert "ours_selected': another_user left out" in capsys.readouterr().out
    three = configured(["--reuse", str(a), "--reuse", str(b)])  # 5 seeds saved, 3 asked
    with pytest.raises(SystemExit, match=r"seeds \[0, 1, 2, 3, 4\], this run \[0, 1, 2\]"):
        pq.read_reused(three)


def test_parts_of_a_row_with_shared_seeds_or_other_settings_are_refused(tmp_path):
    first = configured([])
    a = seed_part(tmp_path / "a.json", first, "ours", [0.1, 0.1, 0.1], {})
    lr = configured(["--lr", "1e-3", "--seed", "3"])
    lr.seeds = [3, 4]
    pq.configure(lr)
    b = seed_part(tmp_path / "b.json", lr, "ours", [0.1, 0.1], {})
    neither = configured(["--lr", "2e-3", "--reuse", str(a), "--reuse", str(b)])
    with pytest.raises(SystemExit, match=r"different configurations \(module\.lr differ\)"):
        pq.read_reused(neither)  # neither part is this run's: which to read is not ours to guess
    overlap = configured(["--seed", "2"])
    overlap.seeds = [2, 3]
    pq.configure(overlap)
    c = seed_part(tmp_path / "c.json", overlap, "ours", [0.1, 0.1], {})
    with pytest.raises(SystemExit, match=r"seed\(s\) \[2\] in more than one"):
        pq.read_reused(configured(["--reuse", str(a), "--reuse", str(c)]))


def test_a_section_without_its_rows_is_skipped_by_name(capsys):
    run = configured([])
    results = {k: pq.Result(k, full_report(0.1)) for k in ("most_popular", "sasrec_bce", "ours")}
    assert pq.report_baselines(run, results) == {} and run.met == {}
    assert pq.report_dro(run, results) == {}
    out = capsys.readouterr().out
    assert "Baselines vs ours: skipped, rows not run here: sasrec_reference, sasrec_ce" in out
    assert "DRO check: skipped, rows not run here: ours_dro" in out


def full_report(ndcg: float) -> RetrievalReport:
    return RetrievalReport(
        metrics={m: ndcg for m in pq.TABLE_METRICS},
        protocol="full ranking",
        num_users=3,
        buckets=[{"bucket": 0, "items": 2, "targets": 3, "recall@10": ndcg}],
    )


@pytest.mark.parametrize(
    "reference, judged_against", [(0.10, "reference code"), (0.07, "SASRec-BCE")]
)
def test_the_bce_target_is_judged_against_the_stronger_sasrec(reference, judged_against, capsys):
    """Issue 20 §2: a re-implemented baseline below its reference code's own result would
    overstate our gain; the ratio is taken against whichever SASRec-BCE scores higher."""
    args = pq.parse_args(["--quick"])
    run = pq.Run(args, start=0.0, epochs=6, repeats=1, tp_epochs=1, seeds=[0, 1], machine="m")
    rows = {"most_popular": 0.05, "sasrec_bce": 0.08, "sasrec_reference": reference,
            "sasrec_ce": 0.09, "ours": 0.13, "ours_dro": 0.12}  # fmt: skip
    results = {
        k: pq.Result(k, full_report(v), seed_reports=[full_report(v)] * 2) for k, v in rows.items()
    }
    fields = pq.report_baselines(run, results)
    assert judged_against in fields["bce_baseline"]
    assert fields["ndcg_vs_sasrec_bce"] == round(0.13 / max(0.08, reference), 3)
    assert fields["ndcg_vs_sasrec_ce"] == round(0.13 / 0.09, 3)
    assert run.met["ndcg_vs_sasrec_bce"] == (0.13 / max(0.08, reference) >= 1.3)
    assert "ndcg_vs_most_popular" not in run.met  # reported, no target
    out = capsys.readouterr().out
    assert "SASRec (reference code)" in out and "MostPopular: 2.60x (reported, no target)" in out
    assert fields["ndcg_vs_sasrec_ce_se"] == 0.0  # the same value at every seed: no spread


def test_the_ratios_standard_error_comes_from_both_rows_seed_spreads():
    def row(*ndcgs):
        return pq.Result("r", full_report(ndcgs[0]), seed_reports=[full_report(x) for x in ndcgs])

    ours, ref = row(0.11, 0.13), row(0.09, 0.11)  # means 0.12 and 0.10, sd 0.01414 each
    expected = 1.2 * math.sqrt((0.01414 / 0.12) ** 2 / 2 + (0.01414 / 0.10) ** 2 / 2)
    assert pq.ratio_se(ours, ref) == pytest.approx(expected, rel=1e-3)
    assert math.isnan(pq.ratio_se(row(0.12), ref))  # one seed: no spread to read


def test_dro_is_reported_here_and_judged_as_a_frontier(capsys):
    """Issue 20 §3 retired the point targets on ours + DRO: the section reports its ratios
    and judges nothing (dro_frontier.py does)."""
    run = configured([])
    results = {
        "ours": pq.Result("ours", full_report(0.12), seed_reports=[full_report(0.12)] * 3),
        "ours_dro": pq.Result("DRO", full_report(0.11), seed_reports=[full_report(0.11)] * 3),
    }
    fields = pq.report_dro(run, results)
    assert fields["dro_ndcg_rel_change"] == round(0.11 / 0.12 - 1, 4)
    assert run.met == {} and "dro_frontier.py" in capsys.readouterr().out
    assert not {"dro_macro_recall", "dro_ndcg_drop"} & set(pq.TARGETS)


def test_one_seed_rows_are_compared_with_the_same_seed_not_a_mean_over_more(capsys):
    """With 5 seeds for the judged rows, a one-seed ablation or DRO row set against their
    mean mixed a seed effect into the ratio (ours' seed 3 is 8% below its others)."""
    run = configured([])
    run.seeds = [0, 1, 2, 3, 4]
    pq.configure(run)

    def row(*ndcgs):
        return pq.Result("r", full_report(ndcgs[0]), seed_reports=[full_report(x) for x in ndcgs])

    results = {"ours": row(0.12, 0.11, 0.10, 0.09, 0.08), "ours_dro": row(0.114),
               "sasrec_ce": row(0.10, 0.05, 0.05, 0.05, 0.05), "plus_future": row(0.11)}  # fmt: skip
    results["next_item"] = results["sasrec_ce"]  # an alias: the same run
    fields = pq.report_dro(run, results)
    assert fields["dro_ndcg_rel_change"] == round(0.114 / 0.12 - 1, 4)  # seed 0 with seed 0
    pq.report_ablation(run, results)
    out = capsys.readouterr().out
    assert "seed(s) [0]" in out and "NDCG@10 1.10x next-item only (same seed)" in out
    assert "NDCG@10 1.67x next-item only (same 5 seeds)" in out  # ours 0.10 / 0.06


def test_ours_with_text_is_judged_against_ours_on_its_three_seeds(capsys):
    """Issue 33 §2: ours + text (the items table through the text model, ID dropout) trains
    on the first 3 judged seeds and is set against ours on those seeds, not on ours' 5."""
    run = configured([])
    run.seeds = [0, 1, 2, 3, 4]
    pq.configure(run)
    assert run.configs["ours_text"]["seeds"] == [0, 1, 2]
    spec = next(s for s in run.specs if s.name == "ours_text")
    assert spec.data["items"] == "auto" and spec.data["item_text"] == ["title", "genres"]
    assert spec.module["encoder"]["item_id_dropout"] == 0.5
    assert spec.module == dict(run.configs["ours"]["module"], encoder=dict(
        run.configs["ours"]["module"]["encoder"], item_id_dropout=0.5))  # fmt: skip

    def row(*ndcgs):
        return pq.Result("r", full_report(ndcgs[0]), seed_reports=[full_report(x) for x in ndcgs])

    results = {"ours": row(0.10, 0.12, 0.11, 0.02, 0.02), "ours_text": row(0.10, 0.12, 0.11)}
    fields = pq.report_text(run, results)
    assert fields["ndcg_text_vs_ours"] == 1.0  # seeds 0-2 only: 0.11 / 0.11, not 0.11 / 0.074
    assert fields["ndcg_text_vs_ours_per_seed"] == [1.0, 1.0, 1.0]
    assert run.met["text_nothing_lost"] is True
    results["ours_text"] = row(0.09, 0.12, 0.11)
    assert pq.report_text(run, results)["ndcg_text_vs_ours"] < 1
    assert run.met["text_nothing_lost"] is False
    assert "seed(s) [0, 1, 2]" in capsys.readouterr().out


def test_ours_selecting_on_validation_is_judged_against_the_reference_with_its_control(capsys):
    """Issue 20 §3: the reference recipe keeps its best validation checkpoint; ours with the
    same selection is set beside it, and beside the same models given another user's input."""
    run = configured([])
    selected = next(s for s in run.specs if s.name == "ours_selected")
    assert selected.select_every == 10  # 10 validations in 100 epochs, as 10 in the reference's 200
    assert run.configs["ours_selected"]["select_every"] == 10
    assert "select_every" not in run.configs["ours"]  # saved rows of the others stay valid
    assert run.configs["ours_selected"]["seeds"] == run.seeds
    seeds = [full_report(0.135), full_report(0.145), full_report(0.125)]
    results = {
        "most_popular": pq.Result("pop", full_report(0.04)),
        "sasrec_reference": pq.Result("ref", full_report(0.1), seed_reports=[full_report(0.1)] * 3,
                                      extra={"best_epoch": [200, 120, 140]}),
        "ours_selected": pq.Result("sel", seeds[0], seed_reports=seeds,
                                   extra={"selected_epoch": [90, 100, 80],
                                          "another_user": [{"NDCG@10": 0.05}] * 3}),
    }  # fmt: skip
    fields = pq.report_selection(run, results)
    assert fields["ndcg_vs_sasrec_reference_same_selection"] == 1.35
    assert run.met["ndcg_vs_sasrec_reference_same_selection"] is True
    assert fields["ours_selected_epochs"] == [90, 100, 80]
    assert fields["ndcg10_ours_another_user"] == 0.05
    out = capsys.readouterr().out
    assert "another user's input" in out and "best epochs [90, 100, 80]" in out
    assert pq.report_selection(run, {"most_popular": results["most_popular"]}) == {}
    assert "rows not run here: sasrec_reference, ours_selected" in capsys.readouterr().out


def test_the_best_validation_weights_are_restored_after_training():
    """benchmarks/best_validation.KeepBestValidation: the weights of the best validation,
    not the last; which epoch won is recorded."""
    import lightning as L
    import torch
    from best_validation import KeepBestValidation

    class Scored(L.LightningModule):
        """One weight that training moves; its validation score peaks at epoch 2."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - 10.0).pow(2).sum()  # w climbs towards 10

        def validation_step(self, batch, batch_idx):
            score = -(self.w.detach() - 0.5).abs().sum()  # best near w = 0.5
            self.log("valid/ndcg@10", score)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)
    keep = KeepBestValidation()
    module = Scored()
    trainer = L.Trainer(max_epochs=8, callbacks=[keep], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, check_val_every_n_epoch=2)  # fmt: skip
    trainer.fit(module, train_dataloaders=data, val_dataloaders=data)
    assert [e for e, _ in keep.history] == [2, 4, 6, 8]
    last = float(module.w)
    best_epoch, best = max(keep.history, key=lambda ev: ev[1])
    assert keep.best_epoch == best_epoch and keep.best == best
    keep.restore(module)
    assert float(module.w) != last and -abs(float(module.w) - 0.5) == pytest.approx(best)


def test_the_saved_results_still_match_the_current_configuration():
    """The README's tables are `--reuse benchmarks/results/pretrain_quality.json`: a change
    to a row's configuration (a default, a recipe) must retrain that row, and this test
    says which one instead of letting README show numbers of another configuration."""
    saved = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "pretrain_quality.json"
    run = configured(["--reuse", str(saved), "--seeds", "5"])  # the judged rows: seeds 0-4
    pq.read_reused(run)  # exits naming the row and the keys that differ
    assert pq.not_run(run) == []
    assert json.loads(saved.read_text())["ours_selected"]["extra"]["selected_epoch"]


def test_ours_rows_have_layers_blocks_and_the_ablation_shows_the_step():
    """Issue 20: 3 blocks won on validation (recipe_variants.py); ours' rows take them and
    the ablation rows keep SASRec's depth, so "next-item only" is still SASRec-CE and the
    depth is one more "+" row."""

    def depths(argv: list[str]) -> dict[str, int]:
        return {
            s.name: s.module["encoder"]["num_layers"] for s in pq.build_specs(pq.parse_args(argv))
        }

    assert pq.parse_args([]).layers == 3
    deep = depths([])
    assert {n: deep[n] for n in ("ours", "ours_selected", "ours_dro", "all", "plus_layers")} == {
        "ours": 3, "ours_selected": 3, "ours_dro": 3, "all": 3, "plus_layers": 3}  # fmt: skip
    assert {
        deep[n] for n in deep if not n.startswith("ours") and n not in ("all", "plus_layers")
    } == {2}
    specs = {s.name: s for s in pq.build_specs(pq.parse_args([]))}
    assert specs["next_item"].alias_of == "sasrec_ce"
    assert specs["plus_layers"].module == dict(
        specs["next_item"].module, encoder=dict(specs["next_item"].module["encoder"], num_layers=3)
    )
    assert specs["ours"].label.endswith("3 blocks)")
    two = depths(["--layers", "2"])  # the recipe before: no depth step in the ablation
    assert "plus_layers" not in two and set(two.values()) == {2}
    assert "plus_layers" not in depths(["--quick"])
    args = pq.parse_args(["--layers", "0"])
    with pytest.raises(SystemExit, match="--layers must be >= 1, got 0"):
        pq.validate(args, pq.build_specs(args))


def test_the_ml100k_config_is_the_recipe_reported_as_ours():
    """configs/pretrain/ml100k.yaml says it is pretrain_quality.py's "ours" and quotes its
    number: the two must not drift apart (a recipe change goes to both)."""
    import inspect

    import yaml

    from userfm.encoder.config import UserEncoderConfig
    from userfm.pretrain.module import PretrainModule

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "configs" / "pretrain" / "ml100k.yaml").read_text())
    args = pq.parse_args([])
    ours = {s.name: s for s in pq.build_specs(args)}["ours"]
    defaults = {
        k: p.default
        for k, p in inspect.signature(PretrainModule).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    want, have = dict(ours.module), dict(config["model"])
    encoder_want, encoder_have = want.pop("encoder"), have.pop("encoder")
    assert {**defaults, **have} == {**defaults, **want}
    base = UserEncoderConfig(num_items=10).to_dict()  # the defaults of every other field
    assert {k: {**base, **encoder_have}[k] for k in base} == {
        k: {**base, **encoder_want}[k] for k in base
    }
    assert (config["data"]["max_len"], config["data"]["batch_size"]) == (
        args.max_len,
        args.batch_size,
    )
    assert config["trainer"]["max_epochs"] == pq.epochs_of(args)


@pytest.mark.parametrize("layers, depth_row, ours_row", [
    ("3", "+ 3 blocks", "ours: all four"), ("2", None, "ours: all three")])  # fmt: skip
def test_the_ablation_table_shows_ours_depth_as_a_step(capsys, layers, depth_row, ours_row):
    run = configured(["--layers", layers])
    three = [full_report(0.1)] * 3  # the judged rows' seeds 0-2; plus_layers: seed 0
    results = {n: pq.Result(n, full_report(0.1), seed_reports=three) for n in ("next_item", "ours")}
    results["plus_layers"] = pq.Result("plus_layers", full_report(0.1))
    pq.report_ablation(run, results)
    lines = capsys.readouterr().out.splitlines()
    labels = [line[:24].strip() for line in lines]
    assert ours_row in labels
    if depth_row:
        assert labels.index(depth_row) == labels.index("+ side info") + 1
        assert "1.00x next-item only" in lines[labels.index(depth_row)]
    else:
        assert not any("blocks" in label for label in labels)


def test_a_row_retrained_after_a_recipe_change_supersedes_the_old_files_copy(tmp_path, capsys):
    """Issue 20: ours went to 3 blocks and its rows were retrained into new files; the merge
    reads them beside the old file's unchanged rows, and says which copy it left out."""
    old_run = configured(["--layers", "2"])
    old = part_file(tmp_path / "old.json", old_run, ["sasrec_ce", "ours"])
    new = part_file(tmp_path / "new.json", configured([]), ["ours"])
    run = configured(["--reuse", str(old), "--reuse", str(new)])
    pq.read_reused(run)
    assert set(run.reused) == {"sasrec_ce", "ours"}
    assert run.reused["ours"]["config"]["module"]["encoder"]["num_layers"] == 3
    out = capsys.readouterr().out
    assert f"--reuse {old}: row 'ours' not read, made with another configuration" in out
    assert "module.encoder.num_layers differ" in out and f"{new} hold(s) this run's" in out
    with pytest.raises(SystemExit, match="row 'ours' was made with a different configuration"):
        pq.read_reused(configured(["--reuse", str(old)]))  # the old copy alone is still refused


def test_an_alias_rows_configuration_names_the_seeds_of_the_run_it_reuses():
    """next-item only is SASRec-CE's run under another name: its saved configuration said
    seed [0] while it held all of SASRec-CE's seed reports."""
    run = configured(["--seeds", "5"])
    assert run.configs["next_item"]["seeds"] == run.configs["sasrec_ce"]["seeds"] == [0, 1, 2, 3, 4]


def test_the_summary_line_is_strict_json_with_one_seed():
    """A standard error from one seed is NaN: printed as null, not as JSON-invalid ``NaN``."""
    run = configured(["--seeds", "1"])
    line = pq.summary_line(run, {"ndcg_vs_sasrec_ce_se": math.nan, "r": [math.inf, 1.0]}, 1.0)
    summary = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON line"))
    assert summary["ndcg_vs_sasrec_ce_se"] is None and summary["r"] == [None, 1.0]

"""The `userfm` command line.

User errors (bad input, bad flags) exit with status 2 and one line on stderr, no traceback;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from userfm._version import __version__
from userfm.cli_options import add_progress, add_schema_args, add_switch, schema_from_args
from userfm.errors import ConfigError, UserfmError


def cmd_synth(args: Namespace) -> int:
    from userfm.data.synthetic import SyntheticConfig, write_synthetic_log
    from userfm.outputs import check_output

    # `args.items` is the namespace's own method (jsonargparse): the option by key
    cfg = SyntheticConfig(num_users=args.users, num_items=args["items"], seed=args.seed)
    target = check_output(Path(args.out) / "events.parquet", overwrite=args.overwrite, flag="--out")
    path = write_synthetic_log(target, cfg)
    print(f"wrote {path} ({cfg.num_users:,} users, {cfg.num_items:,} items, seed {cfg.seed})")
    return 0


def cmd_embed(args: Namespace) -> int:
    import pyarrow.parquet as pq

    from userfm.api.embed import resolve_device
    from userfm.data.readers import read_events
    from userfm.encoder import UserEncoder
    from userfm.outputs import atomic_output, check_output, check_output_dir

    resolve_device(args.device)  # a bad --device is refused before any work
    if args.devices <= 1:  # one file: refused before any work when it may not be written
        check_output(
            args.output, overwrite=args.overwrite, inputs=[args.input], suffixes=[".parquet"]
        )
    else:  # a folder of part-<rank>.parquet files
        check_output_dir(args.output, overwrite=args.overwrite, flag="--output")
    model = UserEncoder.from_pretrained(args.model)
    log = read_events(
        args.input, schema_from_args(args, model.training_schema()), min_events=args.min_events
    )
    if args.devices > 1:
        from userfm.pretrain.predict import embed_sharded

        stats = embed_sharded(
            model,
            log,
            args.output,
            devices=args.devices,
            batch_size=args.batch_size,
            progress=args.progress,
        )
        # one line per rank: the ranks print into the same stream
        print(
            f"rank shard: embedded {stats['users']:,} users ({stats['events']:,} events, "
            f"{stats['truncated_users']:,} histories cut to the {model.config.max_len} most "
            f"recent, {stats['oov_items']:,} unknown items mapped to OOV, "
            f"{stats['users_without_side_features']:,} users without the side features the "
            f"model uses) -> {args.output}/part-*.parquet"
        )
        return 0
    out = Path(args.output)
    totals = dict.fromkeys(
        ("users", "events", "oov_items", "truncated_users", "users_without_side_features"), 0
    )
    with atomic_output(out) as tmp:  # a kill leaves the old file, not one without a footer
        writer = None
        try:
            for part in model.iter_embed(
                log,
                batch_size=args.batch_size,
                device=args.device,
                progress=args.progress,
            ):
                table = part.to_arrow()
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                for k in totals:
                    totals[k] += part.stats[k]
        finally:
            if writer is not None:
                writer.close()
    s = log.stats
    print(
        f"embedded {totals['users']:,} users ({totals['events']:,} events, "
        f"{totals['truncated_users']:,} histories cut to the {model.config.max_len} most recent) -> {out}\n"
        f"unknown items (mapped to OOV): {totals['oov_items']:,}; users without the side "
        f"features the model uses (embedded without them): {totals['users_without_side_features']:,}\n"
        f"input: {s.summary()}"
    )
    return 0


def cmd_configs(args: Namespace) -> int:
    """List the shipped configs, or print one (to copy and edit)."""
    from userfm import configs

    if args.action == "list":
        for stage, name in configs.available():
            print(f"{stage:<9} {name:<20} {configs.purpose(configs.find(name, stage))}")
        return 0
    if not args.name:
        raise ConfigError("`userfm configs show` needs a NAME (see `userfm configs list`)")
    path = configs.find(args.name)
    if path is None:
        names = ", ".join(f"{s}/{n}" for s, n in configs.available())
        raise FileNotFoundError(f"no shipped config {args.name!r} (shipped: {names})")
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def cmd_demo(args: Namespace) -> int:
    """The whole path on the embedded synthetic log, each step with its own command."""
    import json

    from userfm import configs
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.data.synthetic import SyntheticConfig, write_synthetic_log
    from userfm.encoder import UserEncoder
    from userfm.eval import MostPopular, evaluate_retrieval
    from userfm.outputs import check_output_dir
    from userfm.pretrain.cli import make_cli
    from userfm.pretrain.export import export_checkpoint

    out = check_output_dir(args.out, overwrite=args.overwrite)  # an earlier demo, or your files
    config = Path(args.pretrain_config)
    if not config.is_file():  # a shipped config's name: the packaged file, from any folder
        config = configs.find(args.pretrain_config, "pretrain")
        if config is None:
            names = ", ".join(n for _, n in configs.available("pretrain"))
            raise FileNotFoundError(
                f"no pretraining config {args.pretrain_config} (shipped: {names})"
            )
    events = write_synthetic_log(
        out / "events.parquet", SyntheticConfig(num_users=args.users, seed=args.seed)
    )
    print(f"[1/5] synthetic log -> {events}   (userfm synth --out {out})")
    columns = {"action": "action", "category": "category", "title": "title"}
    fit_args = [
        "--config",
        str(config),
        "--data.source",
        str(events),
        "--data.schema",
        json.dumps(columns),
    ]
    fit_args += ["--trainer.default_root_dir", str(out)]  # logs/ and checkpoints/ inside
    fit_args += ["--trainer.max_epochs", str(args.epochs)] if args.epochs else []
    print(f"[2/5] pretraining   (userfm pretrain fit --config {config} ...)")
    cli = make_cli(fit_args, run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    encoder_dir = export_checkpoint(
        ckpt, out / "encoder", name="userfm demo encoder (synthetic log)"
    )
    print(f"[3/5] exported {ckpt} -> {encoder_dir}   (userfm pretrain export CKPT DIR)")
    model = UserEncoder.from_pretrained(encoder_dir)
    schema = EventSchema(**columns)
    log = read_events(events, schema)
    emb = model.embed(log, progress=args.progress)
    emb_path = emb.to_parquet(out / "embeddings.parquet")
    print(f"[4/5] embedded {len(emb):,} users, dim {emb.dim} -> {emb_path}   (userfm embed ...)")
    ours = evaluate_retrieval(model, log)
    popular = evaluate_retrieval(MostPopular().fit(log), log)
    print(f"[5/5] next-item retrieval, {ours.protocol}:")
    for name, report in (("encoder", ours), ("most popular", popular)):
        m = report.metrics
        print(f"      {name:<13} HR@10 {m['HR@10']:.3f}  NDCG@10 {m['NDCG@10']:.3f}")
    user = emb.user_ids[0]
    titles = log.item_attributes(("title", "category"))
    history = log.history(user)
    print(f"\nuser {user}: last 5 of {len(history)} events")
    for item in history.items[-5:]:
        print(f"  {titles[item]['title']:<32} [{titles[item]['category']}]")
    print("top-5 next items (seen items excluded):")
    recs = model.recommend([history], k=5, progress=False)
    for item, score in zip(recs.item_ids[0], recs.scores[0]):
        print(f"  {titles[item]['title']:<32} [{titles[item]['category']}]  score {score:.2f}")
    print("nearest users (cosine):", ", ".join(f"{u} {s:.2f}" for u, s in emb.nearest(user, k=5)))
    return 0


def cmd_eval_questions(args: Namespace) -> int:
    from userfm.data.sources import load_source
    from userfm.eval.uqa import QuestionConfig, build_questions, save_questions
    from userfm.outputs import check_output_dir

    check_output_dir(args.out, overwrite=args.overwrite)  # before any work
    log = load_source(args.log, format=args.log_format, schema=asdict(schema_from_args(args)))
    overrides: dict = {"format": args.format, **_nouns(args)}
    if args.tasks:
        overrides["tasks"] = tuple(t.strip() for t in args.tasks.split(","))
    questions = build_questions(log, seed=args.seed, config=QuestionConfig(**overrides))
    out = save_questions(questions, args.out, config=QuestionConfig(**overrides))
    counts = ", ".join(f"{split} {len(ds):,}" for split, ds in questions.items())
    print(f"wrote {out}: {counts} questions (users skipped per sub-task: {out}/stats.json)")
    return 0


def _add_log_args(
    p: ArgumentParser,
    *,
    log_help: str = "event log: a file, a dataset folder, or 'synthetic'",
    out_help: str,
) -> None:
    """``--log``, ``--log_format``, ``--out`` and ``--overwrite``, as every `eval` command
    reads them."""
    p.add_argument("--log", type=str, required=True, help=log_help)
    p.add_argument(
        "--log_format", type=str, default="auto", help="auto, movielens-100k, movielens-1m, ..."
    )
    p.add_argument("--out", type=str, required=True, help=out_help)
    add_switch(
        p,
        "overwrite",
        "write into a folder that already holds files (the files of the same names are replaced)",
    )


def _nouns(args: Namespace) -> dict[str, str]:
    """The `QuestionConfig` nouns given on the command line."""
    nouns = {"item_noun": args.item_noun, "attribute_noun": args.attribute_noun}
    return {k: v for k, v in nouns.items() if v}


def _add_noun_args(p: ArgumentParser) -> None:
    p.add_argument(
        "--item_noun", type=str | None, default=None, help="what an item is called (default 'item')"
    )
    p.add_argument(
        "--attribute_noun",
        type=str | None,
        default=None,
        help="what the attribute is called (default its column)",
    )


def cmd_eval_descriptions(args: Namespace) -> int:
    from userfm.data.sources import load_source
    from userfm.eval.uqa import QuestionConfig, save_questions
    from userfm.eval.uqa.describe import build_descriptions
    from userfm.outputs import check_output_dir

    check_output_dir(args.out, overwrite=args.overwrite)  # before any work
    log = load_source(args.log, format=args.log_format, schema=asdict(schema_from_args(args)))
    config = QuestionConfig(format="free", **_nouns(args))
    records = build_descriptions(log, seed=args.seed, config=config, recent=args.recent)
    out = save_questions(records, args.out, config=config)
    counts = ", ".join(f"{split} {len(ds):,}" for split, ds in records.items())
    print(f"wrote {out}: {counts} description records (alignment data)")
    return 0


def _method_dir(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder, or its parent for .../adapter)."""
    name, sep, path = spec.partition("=")
    folder = Path(path if sep else spec).expanduser()
    if not sep:
        name = folder.parent.name if folder.name == "adapter" else folder.name
    return name, folder


def cmd_eval_uqa(args: Namespace) -> int:

    from userfm.adapters.config import AdapterConfig
    from userfm.adapters.model import UserConditionedLM
    from userfm.api.embed import resolve_device
    from userfm.data.sources import load_source
    from userfm.eval.uqa import evaluate as ev
    from userfm.eval.uqa import load_question_config, load_questions
    from userfm.eval.uqa.report import include_results, write_report
    from userfm.llm import DEFAULT_LLM, load_llm
    from userfm.outputs import check_output_dir

    device = resolve_device(args.device)  # before any work
    check_output_dir(args.out, overwrite=args.overwrite)
    named = [_method_dir(spec) for spec in args.adapter]
    names = [n for n, _ in named]
    if len(set(names)) < len(names):
        raise ConfigError(f"`--adapter`: two methods share a name in {names}; use NAME=DIR")
    questions = load_questions(args.questions)
    if args.split not in questions or not len(questions[args.split]):
        raise ConfigError(f"`--split`: {args.questions} has no {args.split!r} questions")
    records = list(questions[args.split])
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",")]
        unknown = sorted(set(tasks) - {r["task"] for r in records})
        if unknown:
            raise ConfigError(f"`--tasks`: no {args.split!r} questions of {unknown}")
        records = [r for r in records if r["task"] in tasks]
    records = ev.sample_per_task(records, args.max_per_task, seed=args.seed)
    train = list(questions["train"]) if "train" in questions else []
    log = load_source(args.log, format=args.log_format, schema=asdict(schema_from_args(args)))
    ev.check_users(records, log)
    results = ev.random_answers(records, seed=args.seed)
    results += ev.prior_answers(records, train)
    results += ev.direct_answers(records, log, load_question_config(args.questions))
    if args.encoder:
        from userfm.encoder import UserEncoder
        from userfm.eval.uqa import encoder_answers as enc

        encoder = UserEncoder.from_pretrained(args.encoder).eval()
        features = enc.mean_state_features(encoder)
        results += enc.probe_answers(features, log, train, records, seed=args.seed)
        results += enc.next_item_answers(
            encoder, log, records, load_question_config(args.questions)
        )

    swap = ev.swapped_users(records, seed=args.seed) if args.swapped else None

    def run(name: str, model: UserConditionedLM, *, letters: bool = False) -> None:
        print(f"userfm eval uqa: {name}: {model.describe()}", flush=True)
        model.to(device)
        common = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
        results.extend(ev.answer_questions(name, model, records, log, letters=letters, **common))
        if swap is not None and model.config.reads_encoder:
            results.extend(
                ev.answer_questions(
                    f"{name}{ev.SWAPPED}", model, records, log, swap=swap, per_token=False, **common
                )
            )

    llm_name = args.llm
    for name, folder in named:
        model = UserConditionedLM.from_pretrained(folder)
        llm_name = llm_name or model.config.llm
        run(name, model)
        del model
    if args.zero_shot:
        llm, tokenizer = load_llm(llm_name or DEFAULT_LLM)
        none = UserConditionedLM(None, llm, tokenizer, AdapterConfig(mode="none"))
        run(ev.ZERO_SHOT_NONE, none, letters=args.letters)
        for budget in args.text_tokens:
            cfg = AdapterConfig(mode="text", text_tokens=budget)
            model = UserConditionedLM(None, llm, tokenizer, cfg)
            run(f"text-{budget} (zero-shot)", model, letters=args.letters)
    if args.include:
        scored = {r["method"] for r in results}
        results += include_results(args.include, records, skip=sorted(scored))
    facts = {
        "questions": f"{args.questions} ({args.split} split, {len(records):,} questions"
        + (f", at most {args.max_per_task} per sub-task" if args.max_per_task else "")
        + "; test users are unseen in adapter training)",
        "log": args.log,
        "LLM": llm_name or "none",
        "scoring": "multiple choice by option likelihood (cloze: each option's text + end of "
        "turn as the answer to the question without its option list; summed log-probability, "
        f"'{ev.PER_TOKEN.strip()}' rows: mean per token); free form: normalised exact / prefix "
        "match"
        + (
            f"; '{ev.LETTER.strip()}' rows: the option letter ranked first (a diagnostic)"
            if args.letters
            else ""
        )
        + (
            f"; '{ev.SWAPPED.strip()}' rows: each question answered with another test user's "
            "context"
            if args.swapped
            else ""
        ),
    }
    if args.include:
        facts["included"] = "methods not scored in this run are taken from " + ", ".join(
            map(str, args.include)
        )
    paths = write_report(results, args.out, facts=facts)
    print(paths["report"].read_text(encoding="utf-8").split("## Accuracy by sub-task")[0])
    print(f"wrote {args.out}: " + ", ".join(p.name for p in paths.values()))
    return 0


def _command(sub: Any, name: str, *, help: str, description: str | None = None) -> ArgumentParser:
    """A sub-command's parser: typed options, ``--config FILE`` (YAML/JSON of the same options)
    and ``--print_config``, as the LightningCLI stages have."""
    p = ArgumentParser(description=description or help)
    p.add_argument("--config", action=ActionConfigFile, help="a YAML/JSON file of these options")
    sub.add_subcommand(name, p, help=help)
    return p


def build_parser() -> ArgumentParser:
    """The parser of every command but the LightningCLI stages (which `main` dispatches to
    their own jsonargparse parsers): one style, one schema group (`userfm.cli_options`)."""
    p = ArgumentParser(
        prog="userfm",
        description="Foundation user-embedding models: embed users from their event histories.",
        exit_on_error=True,
    )
    p.add_argument("--version", action="version", version=f"userfm {__version__}")
    add_switch(p, "debug", "show tracebacks and debug logs")
    sub = p.add_subcommands(dest="command", required=False)
    for name, help in STAGE_HELP.items():  # listed in --help; parsed by the stages themselves
        sub.add_subcommand(name, ArgumentParser(add_help=False), help=help)

    ev = ArgumentParser(description="Evaluation: build UQA question sets, evaluate adapters.")
    sub.add_subcommand("eval", ev, help="evaluation: build UQA question sets, evaluate adapters")
    ev_sub = ev.add_subcommands(dest="eval_command", required=True)
    q = _command(
        ev_sub,
        "questions",
        help="build UQABench-style questions about users from an event log",
        description="Build personalised questions (seven sub-tasks in three dimensions) from "
        "a log with item attributes; writes train/valid/test .jsonl (users split, test users "
        "unseen in training) and the dataset.",
    )
    _add_log_args(q, out_help="output folder")
    q.add_argument("--format", type=Literal["mc", "free", "both"], default="mc")
    q.add_argument(
        "--tasks",
        type=str | None,
        default=None,
        help="comma-separated sub-tasks (default: all seven)",
    )
    q.add_argument("--seed", type=int, default=0)
    _add_noun_args(q)
    add_schema_args(q)
    d = _command(
        ev_sub,
        "descriptions",
        help="build history descriptions for the adapters' alignment stage",
        description="Write free-form records whose answers describe each user's visible "
        "history (recent items with their attribute; top attributes overall and lately), with "
        "the users split as `userfm eval questions` splits them (same --seed).",
    )
    _add_log_args(d, out_help="output folder")
    d.add_argument("--recent", type=int, default=3, help="recent items listed per user")
    d.add_argument("--seed", type=int, default=0, help="the question set's seed")
    _add_noun_args(d)
    add_schema_args(d)
    _add_uqa_args(
        _command(
            ev_sub,
            "uqa",
            help="answer a UQA question set with adapters and baselines; write report.md, charts",
            description="Evaluate adapters (and the random, prior-only, direct-computation and, "
            "with --zero_shot, untrained no-user / text-prompt baselines) on UQA questions; "
            "writes report.md, results.jsonl, accuracy.csv and PNG charts.",
        )
    )

    s = _command(
        sub,
        "synth",
        help="write a synthetic event log (parquet)",
        description="Write a synthetic event log: users with latent interests, Zipf "
        "popularity, sessions, drift.",
    )
    s.add_argument(
        "--out", type=str, required=True, help="output folder (events.parquet is written there)"
    )
    s.add_argument("--users", type=int, default=2000)
    s.add_argument("--items", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    add_switch(s, "overwrite", "replace an existing events.parquet")

    e = _command(
        sub,
        "embed",
        help="embed every user of an event log",
        description="Embed every user of an event log with a saved encoder; writes parquet "
        "(user, embedding).",
    )
    e.add_argument(
        "--model",
        type=str,
        required=True,
        help="folder written by save_pretrained / userfm pretrain export",
    )
    e.add_argument(
        "--input", type=str, required=True, help="event log: .parquet, .csv, .tsv, .jsonl"
    )
    e.add_argument("--output", type=str, required=True, help="output .parquet (never the input)")
    add_switch(e, "overwrite", "replace an existing --output")
    e.add_argument("--batch_size", type=int, default=256)
    e.add_argument(
        "--device",
        type=str | None,
        default=None,
        help="cpu, cuda, cuda:1 ... (default: cuda if available)",
    )
    e.add_argument(
        "--min_events", type=int, default=1, help="drop (and count) users with fewer events"
    )
    e.add_argument(
        "--devices",
        type=int,
        default=1,
        help="> 1: shard users over this many processes/GPUs (Lightning Fabric launches them; "
        "each runs the same loop as one process); --output is then a folder of "
        "part-<rank>.parquet files",
    )
    add_progress(e)
    add_schema_args(e)

    c = _command(
        sub,
        "configs",
        help="list the shipped configs, or print one to copy and edit",
        description="The configs installed with userfm; any command's --config also takes "
        "their names (e.g. `userfm pretrain fit --config synthetic-tiny`).",
    )
    c.add_argument("action", choices=["list", "show"])
    c.add_argument("name", nargs="?", default=None, help="with show: a config's name")

    d = _command(
        sub,
        "demo",
        help="the README demo: synthetic log -> pretrain -> export -> embed -> evaluate",
        description="The whole path on the embedded synthetic log: write it, pretrain an "
        "encoder (configs/pretrain/synthetic-tiny.yaml), export it, embed every user, compare "
        "next-item retrieval with most-popular, and show one user's history, next items and "
        "neighbours.",
    )
    d.add_argument("--out", type=str, default="runs/demo")
    add_switch(d, "overwrite", "write into a --out that already holds files")
    d.add_argument(
        "--pretrain_config",
        type=str,
        default="synthetic-tiny",
        help="pretraining config: a YAML file or a shipped config's name (default: synthetic-tiny)",
    )
    d.add_argument("--users", type=int, default=2000)
    d.add_argument(
        "--epochs", type=int | None, default=None, help="override the config's max_epochs"
    )
    d.add_argument("--seed", type=int, default=0)
    add_progress(d)
    return p


def _add_uqa_args(u: ArgumentParser) -> None:
    """The options of `userfm eval uqa`."""
    u.add_argument(
        "--questions", type=str, required=True, help="folder written by `userfm eval questions`"
    )
    _add_log_args(
        u, log_help="the event log the questions were built from", out_help="report folder"
    )
    u.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="an adapter directory (repeat for several); named after its folder unless NAME=",
    )
    add_switch(
        u,
        "zero_shot",
        "also evaluate the frozen LLM with no user context and with the history as text",
    )
    u.add_argument(
        "--text_tokens",
        type=int,
        nargs="+",
        default=[256, 1024],
        help="history token budgets of the zero-shot text prompts",
    )
    u.add_argument(
        "--encoder",
        type=str | None,
        default=None,
        metavar="DIR",
        help="a saved encoder: add its linear probe and its next-item scores as references",
    )
    add_switch(
        u,
        "swapped",
        "also answer with another user's context (the user-specific part of the signal): "
        "soft-prompt and cross-attention adapters",
    )
    add_switch(
        u,
        "letters",
        "with --zero_shot: also score the option letter the frozen LLM ranks first (a "
        "diagnostic of position bias)",
    )
    u.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="RESULTS",
        help="results.jsonl (or report folder) of an earlier run on the same questions: its "
        "methods that this run does not score join the report (repeat; the last file wins)",
    )
    u.add_argument(
        "--llm",
        type=str | None,
        default=None,
        help="LLM of the zero-shot methods (default: adapters')",
    )
    u.add_argument("--split", type=str, default="test")
    u.add_argument(
        "--tasks", type=str | None, default=None, help="comma-separated sub-tasks (default: all)"
    )
    u.add_argument(
        "--max_per_task", type=int | None, default=None, help="sample this many per sub-task"
    )
    u.add_argument("--batch_size", type=int, default=16)
    u.add_argument("--max_new_tokens", type=int, default=24, help="free-form answer length")
    u.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    u.add_argument("--seed", type=int, default=0)
    add_schema_args(u)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (tests and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


#: commands with a LightningCLI parser of their own (`plot` is `pretrain plot`)
STAGE_HELP = {
    "pretrain": "pretrain an encoder (LightningCLI: fit / validate / test), export, plot",
    "plot": "training curves of a run folder to PNG",
    "adapters": "fine-tune an LLM adapter (LightningCLI: fit / validate / test), chat",
}

#: the function of each command `build_parser` parses (``eval`` names its sub-commands)
COMMANDS = {
    "synth": cmd_synth,
    "embed": cmd_embed,
    "configs": cmd_configs,
    "demo": cmd_demo,
    "eval questions": cmd_eval_questions,
    "eval descriptions": cmd_eval_descriptions,
    "eval uqa": cmd_eval_uqa,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `userfm` command; a user error is exit status 2 and one line on stderr (the
    traceback with ``--debug``, which may stand anywhere on the line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    rest = [a for a in argv if a != "--debug"]
    # only userfm's own loggers: Lightning and transformers keep their handlers (no duplicates)
    root = logging.getLogger("userfm")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        root.addHandler(_StderrHandler())
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    if rest and rest[0] in STAGE_HELP:  # dispatched to the stage's own parser
        if rest[0] == "adapters":
            from userfm.adapters.cli import main as stage_main
        else:
            from userfm.pretrain.cli import main as stage_main
        command, run = rest[0], partial(stage_main, rest if rest[0] == "plot" else rest[1:])
    else:
        parser = build_parser()
        args = parser.parse_args(rest)
        if args.command is None:
            parser.print_help()
            return 2
        args, command = args[args.command], args.command
        if command == "eval":
            args, command = args[args.eval_command], f"eval {args.eval_command}"
        run = partial(COMMANDS[command], args)
    try:  # the one error handler of every command
        return run()
    except (UserfmError, FileNotFoundError) as exc:
        if debug:
            raise
        print(f"userfm {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

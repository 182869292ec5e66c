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
from typing import TYPE_CHECKING

from jsonargparse import Namespace

from userfm.cli_options import schema_from_args
from userfm.cli_parser import STAGE_HELP, build_parser
from userfm.errors import ConfigError, UserfmError

if TYPE_CHECKING:  # datasets is imported by the commands that read it
    from datasets import DatasetDict


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
    from userfm.data.prepared import is_prepared
    from userfm.data.readers import read_events
    from userfm.encoder import UserEncoder
    from userfm.outputs import atomic_output, check_output, check_output_dir

    resolve_device(args.device)  # a bad --device is refused before any work
    if is_prepared(args.input):
        return _embed_prepared(args)
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


def cmd_prepare(args: Namespace) -> int:
    from userfm.data.prepare import prepare_log

    prepared = prepare_log(
        args.log,
        args.out,
        schema_from_args(args),
        format=args.format,
        min_events=args.min_events,
        duplicates=args.duplicates,
        encoding=args.encoding,
        sep=args.sep,
        min_item_count=args.min_item_count,
        max_items=args.max_items,
        num_shards=args.num_shards,
        engine=args.engine,
        memory_limit=args.memory_limit,
        threads=args.threads,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    print(
        f"prepared {prepared.num_users:,} users ({prepared.num_events:,} events) in "
        f"{len(prepared.shards)} shards, {len(prepared.vocabs.items.tokens):,} items in the "
        f"vocabulary -> {prepared.root}\ninput: {prepared.stats.summary()}"
    )
    return 0


def _embed_prepared(args: Namespace) -> int:
    """`userfm embed` of a prepared log: one output file per input shard, resumable."""
    from userfm.api.embed_prepared import embed_prepared, finish_output, start_output
    from userfm.data.prepared import PreparedLog
    from userfm.encoder import UserEncoder

    given = {k: v for k, v in vars(args.schema).items() if v is not None}
    if given or args.min_events != 1:
        raise ConfigError(
            "--schema.* and --min_events do not apply to a prepared log (it was read when "
            "prepared): prepare it again with them"
        )
    prepared = PreparedLog.open(args.input)
    model = UserEncoder.from_pretrained(args.model)
    if args.devices > 1:
        from userfm.pretrain.predict import embed_sharded

        stats = embed_sharded(
            model, prepared, args.output, devices=args.devices, batch_size=args.batch_size,
            progress=args.progress, overwrite=args.overwrite,
        )  # fmt: skip
    else:
        out = start_output(model, prepared, args.output, overwrite=args.overwrite)
        stats = embed_prepared(
            model, prepared, out, batch_size=args.batch_size, device=args.device,
            progress=args.progress,
        )  # fmt: skip
        finish_output(prepared, out)
    print(
        f"embedded {stats.get('users', 0):,} users of {prepared.num_users:,} "
        f"({stats['skipped_shards']} of {len(prepared.shards)} shards already written, "
        f"skipped; {stats.get('oov_items', 0):,} unknown items mapped to OOV) -> "
        f"{args.output}/shard-*.parquet"
    )
    return 0


def cmd_items_encode(args: Namespace) -> int:
    import pyarrow.parquet as pq

    from userfm.api.embed import resolve_device
    from userfm.data.items import read_items
    from userfm.encoder.item_vectors import encode_items
    from userfm.encoder.text_model import resolve_text_model
    from userfm.outputs import atomic_output, check_output

    resolve_device(args.device)  # bad flags are refused before any work
    resolve_text_model(args.text_model)
    items = args["items"]  # `args.items` is the namespace's own method (jsonargparse)
    out = check_output(args.output, overwrite=args.overwrite, inputs=[items], suffixes=[".parquet"])
    table = read_items(items, id_column=args.id_column)
    found = encode_items(
        table,
        args.text,
        text_model=args.text_model,
        batch_size=args.batch_size,
        device=args.device,
        progress=args.progress,
        cache_dir=args.cache_dir,
    )
    with atomic_output(out) as tmp:
        pq.write_table(found.to_arrow(), tmp)
    without = int((~found.has_text).sum())
    print(
        f"encoded {len(found.ids) - without:,} item texts ({', '.join(found.columns)}) with "
        f"{found.model.name} ({found.model.dim}-d) -> {out}\nitems without text (null vector): "
        f"{without:,}"
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


def _nouns(args: Namespace) -> dict[str, str]:
    """The `QuestionConfig` nouns given on the command line."""
    nouns = {"item_noun": args.item_noun, "attribute_noun": args.attribute_noun}
    return {k: v for k, v in nouns.items() if v}


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


def _uqa_records(args: Namespace, questions: DatasetDict) -> list[dict]:
    """The questions `userfm eval uqa` answers: ``--split``'s, of ``--tasks`` (all when
    unset), at most ``--max-per-task`` of each sub-task (drawn with ``--seed``)."""
    from userfm.eval.uqa import evaluate as ev

    if args.split not in questions or not len(questions[args.split]):
        raise ConfigError(f"`--split`: {args.questions} has no {args.split!r} questions")
    records = list(questions[args.split])
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",")]
        unknown = sorted(set(tasks) - {r["task"] for r in records})
        if unknown:
            raise ConfigError(f"`--tasks`: no {args.split!r} questions of {unknown}")
        records = [r for r in records if r["task"] in tasks]
    return ev.sample_per_task(records, args.max_per_task, seed=args.seed)


def _uqa_facts(args: Namespace, num_questions: int, llm_name: str | None) -> dict[str, str]:
    """The protocol lines `userfm eval uqa` writes at the head of its report."""
    from userfm.eval.uqa import evaluate as ev

    facts = {
        "questions": f"{args.questions} ({args.split} split, {num_questions:,} questions"
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
    return facts


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
    records = _uqa_records(args, questions)
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
    facts = _uqa_facts(args, len(records), llm_name)
    paths = write_report(results, args.out, facts=facts)
    print(paths["report"].read_text(encoding="utf-8").split("## Accuracy by sub-task")[0])
    print(f"wrote {args.out}: " + ", ".join(p.name for p in paths.values()))
    return 0


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


#: the function of each command `build_parser` parses (``eval`` names its sub-commands)
COMMANDS = {
    "synth": cmd_synth,
    "embed": cmd_embed,
    "prepare": cmd_prepare,
    "configs": cmd_configs,
    "demo": cmd_demo,
    "eval questions": cmd_eval_questions,
    "eval descriptions": cmd_eval_descriptions,
    "eval uqa": cmd_eval_uqa,
    "items encode": cmd_items_encode,
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
        if command in ("eval", "items"):  # command groups: the sub-command runs
            sub = args[f"{command}_command"]
            args, command = args[sub], f"{command} {sub}"
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

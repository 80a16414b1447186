"""`yotsuba`: one command per stage. Human tables by default, the same summary with `--json`."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from flows.libraries import configure_libraries
from flows.settings import Settings, check_env_file, read_settings
from tasks.errors import Failure, UserError
from tasks.redact import redact


class _Yotsuba(TyperGroup):
    """Every command runs inside this group's `invoke`: the one place where the errors a person can act on
    become one line on stderr and an exit code (2: bad input, 1: failed); `-v` adds the traceback. Anything
    else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            known = user_facing(exc)
            if known is None:
                raise
            code, lines = known
            if state.verbose:
                print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
            for line in lines:
                # one line each, never wrapped (scripts read them too); no secrets in URLs
                err.print(redact(line), style="red", soft_wrap=True, markup=False, highlight=False)
            raise typer.Exit(code) from None


# Errors raised by modules that do not share tasks.errors' types, with their exit codes (1: failed). Looked up
# only among modules already imported: an error of a module that was never imported cannot have happened.
FOREIGN_FAILURES = {
    ("tasks.reddit", "RedditCredentialsMissing"): 1, ("tasks.reddit", "RedditAuthFailed"): 1,
    ("tasks.faces", "CascadeError"): 1, ("models.data", "DatasetTooSmall"): 1,
    ("models.classifier", "PretrainedWeightsUnavailable"): 1, ("models.training", "TrackingLost"): 1,
}
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_PERMITTED = {errno.EACCES, errno.EPERM, errno.EROFS}


def user_facing(exc: BaseException) -> tuple[int, list[str]] | None:
    """(exit code, lines to print) for an error a person can act on; None for a bug."""
    if isinstance(exc, (UserError, Failure)):
        return exc.exit_code, exc.lines()
    for (module, name), code in FOREIGN_FAILURES.items():
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(exc, kind):
            return code, [str(exc)]
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        where = f" writing {exc.filename}" if exc.filename else ""
        return 1, [f"the disk is full{where}: free some space and run again (what was finished is kept)"]
    if isinstance(exc, OSError) and exc.errno in NOT_PERMITTED:
        where = f"{exc.filename}: " if exc.filename else ""
        return 1, [f"{where}{exc.strerror}: check that the data directory ({_data_dir()}) and the files named are "
                   "writable by you"]
    if isinstance(exc, sqlite3.OperationalError) and ("disk is full" in str(exc) or "readonly" in str(exc)):
        return 1, [f"the catalog cannot be written ({exc}): is the disk full, or the data directory read-only?"]
    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in str(exc) or "not a database" in str(exc)):
        return 1, [f"the catalog is damaged ({exc}): restore it from a backup, or move it away to start anew"]
    return None


def _data_dir() -> str:
    return str(state.settings.data_dir) if state.settings else "YOTSUBA_DATA_DIR"


app = typer.Typer(help="Build an anime character face dataset from Reddit and train a classifier on it.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=_Yotsuba)
job_app = typer.Typer(help="Create, check and convert job files.", no_args_is_help=True)
app.add_typer(job_app, name="job")

out = Console()
err = Console(stderr=True)
EXIT_BAD_INPUT = 2


class State:
    settings: Settings | None = None
    data_dir: Path | None = None
    verbose: int = 0


state = State()


def settings() -> Settings:
    """The one Settings object, read once, at the edge."""
    if state.settings is None:
        overrides: dict[str, Any] = {"data_dir": state.data_dir} if state.data_dir else {}
        state.settings = read_settings(**overrides)
    return state.settings


@app.callback()
def main(
    data_dir: Annotated[Path | None, typer.Option(help="Overrides YOTSUBA_DATA_DIR.")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug.")] = 0,
) -> None:
    state.data_dir = data_dir
    state.settings = None
    state.verbose = verbose
    # Before Prefect is imported: its local API gets time to start on a busy machine (its default, 20 s, is
    # short of a first start on 2 loaded cores), and no usage analytics from an offline tool.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    check_env_file()
    configure_libraries(verbose)  # bounded MLflow retries, no progress bars or known library warnings
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=err, show_path=False, level=level)
    if verbose == 0:
        # Prefect's own lines (run names, its local API starting, tracebacks of the errors this CLI explains
        # itself) only with -v: the CLI speaks in progress bars and tables. The runs still log to the API.
        handler.addFilter(lambda record: not record.name.startswith("prefect"))
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def _bar(as_json: bool) -> Progress:
    """A progress bar on stderr, for people: off with --json and when stderr is not a terminal."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True, disable=as_json or not err.is_terminal)


def _reason_table(title: str, counts: dict[str, int], column: str = "count") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("reason")
    table.add_column(column, justify="right")
    for reason, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(reason, str(count))
    return table


def _load_job_or_exit(path: Path):  # -> Job
    """The job, or a JobFileError: one line per problem and exit 2 (mapped by _Yotsuba)."""
    from tasks.jobs import load_job

    return load_job(path)


def _run_flow(cfg: Settings, start, job: str | None = None):  # -> whatever the flow returns
    """Run a flow in this process with the CLI's settings, after checking the Prefect server it would report
    to (PREFECT_API_URL; unset: Prefect's local API), holding the job's lock (tasks.locks: one run of a job at
    a time). Its errors are mapped to messages by _Yotsuba."""
    from flows.jobfiles import using_settings
    from flows.local_api import local_api_dies_with_this_process
    from flows.preflight import check_prefect
    from tasks.locks import job_lock

    check_prefect(cfg.server_check_timeout)  # before the lock: with the server down, nothing is touched
    with job_lock(cfg.data_dir, job) if job else contextlib.nullcontext():
        local_api_dies_with_this_process()  # a SIGKILLed CLI must not leave Prefect's local API running
        with using_settings(cfg):
            return start()


# ---------------------------------------------------------------- job


@job_app.command("validate")
def job_validate(
    path: Annotated[Path, typer.Argument(help="A job file (.yaml, .yml or .json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the normalised job as JSON.")] = False,
) -> None:
    """Check a job file. Exit 2 with one line per problem when it is invalid."""
    job = _load_job_or_exit(path)
    if as_json:
        print(json.dumps(job.model_dump(mode="json"), indent=2))
        return
    table = Table(title=f"job {job.name}: valid", title_justify="left")
    for column in ("label", "aliases", "sources"):
        table.add_column(column)
    for label in job.labels:
        sources = "\n".join(f"{s.kind} r/{s.subreddit}" for s in label.sources) or "-"
        table.add_row(label.name, ", ".join(label.aliases) or "-", sources)
    out.print(table)
    _say_backend(job)


def _say_backend(job) -> None:
    """One line on stderr when a scrape would not use Reddit's API (no keys), and what the archive cannot do."""
    from flows.scrape import backend_notice

    notice = backend_notice(settings(), job)
    if notice:
        err.print(f"[yellow]{notice}[/yellow]", soft_wrap=True)


@job_app.command("new")
def job_new(
    output: Annotated[Path, typer.Argument(help="Where to write the job (YAML; .json for JSON; - for stdout).")],
    name: Annotated[str | None, typer.Option(help="Job name (lowercase slug).")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="A character label; repeat.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="LABEL=ALIAS; repeat.")] = None,
    character_sub: Annotated[list[str] | None, typer.Option(help="LABEL=SUBREDDIT of the character; repeat.")] = None,
    show: Annotated[str | None, typer.Option(help="The show's subreddit: posts whose title names a label.")] = None,
    thread_query: Annotated[str | None, typer.Option(help="Search query for discussion threads.")] = None,
    thread_sub: Annotated[str | None, typer.Option(help="Subreddit of the threads (default: --show).")] = None,
    thread_flair: Annotated[str | None, typer.Option(help="Flair the threads must have.")] = None,
    nsfw: Annotated[str, typer.Option(help="exclude | include | only")] = "exclude",
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Ask for everything.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Create a valid job file from flags, or from questions with --interactive."""
    from tasks.jobs import JobFileError, build_job

    labels = list(label or [])
    aliases = _pairs(alias, "--alias")
    character_subs = _pairs(character_sub, "--character-sub")
    if interactive or (not labels and sys.stdin.isatty()):
        name = typer.prompt("Job name (lowercase, e.g. gotoubun)", default=name or output.stem.lower())
        labels = [x.strip() for x in typer.prompt("Labels, comma separated").split(",") if x.strip()]
        for lbl in labels:
            extra = typer.prompt(f"Aliases of {lbl} (comma separated, empty for none)", default="")
            aliases.extend((lbl, a.strip()) for a in extra.split(",") if a.strip())
            sub = typer.prompt(f"Subreddit of {lbl} (empty for none)", default="")
            if sub.strip():
                character_subs.append((lbl, sub.strip()))
        show = typer.prompt("The show's subreddit (empty for none)", default=show or "") or None
        thread_query = typer.prompt("Discussion thread search query (empty for none)",
                                    default=thread_query or "") or None
        if thread_query:
            thread_sub = typer.prompt("Subreddit of those threads", default=thread_sub or show or "anime")
            thread_flair = typer.prompt("Thread flair (empty for any)", default=thread_flair or "") or None
    if not labels:
        err.print("[red]give at least one --label (or run with --interactive)[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        job = build_job(
            name=name or output.stem.lower(), labels=labels, aliases=aliases, character_subs=character_subs,
            show=show, thread_query=thread_query, thread_sub=thread_sub, thread_flair=thread_flair, nsfw=nsfw,
        )
    except JobFileError as exc:
        for problem in exc.problems:
            print(f"job new: {problem}", file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    _write_job(job, output, force)


@job_app.command("convert")
def job_convert(
    legacy: Annotated[Path, typer.Argument(help="A job JSON of the reference project (TYPE, SUBREDDIT, ...).")],
    output: Annotated[Path, typer.Argument(help="Where to write the YAML job (- for stdout).")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Convert a reference-project job file into this tool's format."""
    _write_job(_load_job_or_exit(legacy), output, force)


def _write_job(job, output: Path, force: bool) -> None:
    text = job.to_json() if output.suffix == ".json" else job.to_yaml()
    if str(output) == "-":
        sys.stdout.write(text)
        return
    if output.exists() and not force:
        err.print(f"[red]{output} exists; pass --force to overwrite[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    output.write_text(text, encoding="utf-8")
    err.print(f"wrote {output}: {len(job.labels)} labels, {sum(len(lb.sources) for lb in job.labels)} sources")


def _pairs(values: list[str] | None, option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            err.print(f"[red]{option} {value!r}: expected LABEL=VALUE[/red]")
            raise typer.Exit(EXIT_BAD_INPUT)
        pairs.append((key.strip(), rest.strip()))
    return pairs


# ---------------------------------------------------------------- scrape


@app.command()
def scrape(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Find new candidate images on Reddit and store them in the catalog (the `scrape` flow)."""
    from flows.progress import reporting
    from flows.scrape import scrape_flow

    job = _load_job_or_exit(job_file)
    _say_backend(job)
    cfg = settings()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True, disable=as_json or not err.is_terminal) as progress:
        task = progress.add_task("scraping", total=None)

        def on_post(report) -> None:
            progress.update(task, description=f"{report.label} · {report.kind} r/{report.subreddit}: "
                                              f"{report.posts_read} posts, {report.new_candidates} new")

        with reporting("scrape", on_post):
            summary = _run_flow(cfg, lambda: scrape_flow(str(job_file)), job.name)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print_scrape_summary(summary)
    if summary.sources and all(s.error for s in summary.sources):
        raise typer.Exit(1)


def print_scrape_summary(summary) -> None:
    table = Table(title=f"scrape {summary.job}: {summary.new_candidates} new candidates "
                        f"in {summary.seconds:.1f} s ({summary.backend or 'reddit'})", title_justify="left")
    for column in ("label", "source", "subreddit", "posts read", "new", "note"):
        table.add_column(column, justify="right" if column in ("posts read", "new") else "left")
    for s in summary.sources:
        note = f"[red]{s.error}[/red]" if s.error else "stopped at last run's posts" if s.stopped_at_seen \
            else "candidate cap reached" if s.cap_reached else ""
        table.add_row(s.label, s.kind, f"r/{s.subreddit}", str(s.posts_read), str(s.new_candidates), note)
    out.print(table)
    if summary.skipped:
        out.print(_reason_table("skipped, by reason", summary.skipped))
    if summary.rate_limited:
        service = "Arctic Shift" if summary.backend == "arctic_shift" else "Reddit"
        out.print(f"{service} rate-limited {summary.rate_limited} requests; each was waited out and retried.")


# ---------------------------------------------------------------- download


@app.command()
def download(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    concurrency: Annotated[int | None, typer.Option(help="Overrides YOTSUBA_DOWNLOAD_CONCURRENCY.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fetch every candidate not fetched yet into the content-addressed image store (the `download` flow)."""
    from flows.download import download_flow
    from flows.progress import reporting

    job = _load_job_or_exit(job_file)
    cfg = settings()
    with _bar(as_json) as progress:
        task = progress.add_task("downloading", total=None)

        def on_progress(done: int, total: int, result) -> None:
            progress.update(task, completed=done, total=total)

        with reporting("download", on_progress):
            summary = _run_flow(cfg, lambda: download_flow(str(job_file), concurrency), job.name)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    print_download_summary(summary)


def print_download_summary(summary) -> None:
    data = summary.to_dict()
    rate = f"{summary.images_per_second:.1f} URLs/s" if summary.urls else "nothing to fetch"
    table = Table(title=f"download {summary.job}: {summary.urls} URLs in {summary.seconds:.1f} s ({rate}), "
                        f"{summary.bytes / 1e6:.1f} MB", title_justify="left")
    table.add_column("candidates")
    table.add_column("count", justify="right")
    labels = {"downloaded": "downloaded (new image)", "already_had": "already had (no request)",
              "duplicate": "duplicate bytes", "removed": "removed by the host", "not_found": "not found",
              "rejected": "rejected", "failed": "failed (retried next run)"}
    for status, count in data["candidates"].items():
        table.add_row(labels[status], str(count))
    out.print(table)
    for title, reasons in (("rejected, by reason", data["rejected"]), ("failed, by reason", data["failed"])):
        if reasons:
            out.print(_reason_table(title, reasons, "URLs"))
    if summary.partials_cleaned:
        out.print(f"removed {summary.partials_cleaned} partial files left by an interrupted run")


# ---------------------------------------------------------------- prepare


@app.command()
def prepare(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    workers: Annotated[int | None, typer.Option(help="Detection processes (default: one per core).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Detect faces in new images, crop them, and rebuild the clean dataset (dedupe, grayscale, cross-label)."""
    from flows.prepare import prepare_flow_for
    from flows.progress import reporting

    job = _load_job_or_exit(job_file)
    cfg = settings()
    with _bar(as_json) as progress:
        task = progress.add_task("detecting faces", total=None)
        with reporting("prepare", lambda done, total: progress.update(task, completed=done, total=total)), \
                reporting("prepare-image", lambda: progress.advance(task)):
            summary = _run_flow(cfg, lambda: prepare_flow_for(cfg)(str(job_file), workers), job.name)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    print_prepare_summary(summary)


def print_prepare_summary(summary) -> None:
    title = (f"prepare {summary.job}: {summary.processed} new of {summary.images} images, "
             f"{summary.faces_found} faces found, {summary.no_face} images without a face, "
             f"{summary.seconds:.1f} s")
    table = Table(title=title, title_justify="left")
    columns = ("labelled", "unlabelled", "duplicate", "grayscale", "cross_label")
    table.add_column("label")
    for column in columns:
        table.add_column(column.replace("_", "-"), justify="right")
    for label, counts in sorted(summary.per_label.items()):
        table.add_row(label, *(str(counts.get(c, 0)) for c in columns))
    out.print(table)
    if summary.unreadable:
        out.print(f"[yellow]{summary.unreadable} stored images do not decode (recorded, skipped)[/yellow]")
    if summary.read_failed:
        out.print(f"[yellow]{summary.read_failed} stored image files could not be read now: tried again on the "
                  "next run[/yellow]")
    if summary.restored:
        out.print(f"{summary.restored} missing face crop files cut again from the stored images")
    for cluster in summary.cross_label_clusters[:10]:
        out.print(f"[yellow]cross-label near-duplicates excluded: {', '.join(cluster['labels'])}: "
                  f"{len(cluster['faces'])} faces[/yellow]")
    if summary.pictures:
        out.print(f"pictures and report: {Path(summary.pictures[0]).parent}")
    out.print(f"dataset digest: {summary.dataset_digest[:16]}")


# ---------------------------------------------------------------- train, evaluate, predict, suggest


@app.command()
def train(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    epochs: Annotated[int | None, typer.Option(help="Overrides YOTSUBA_TRAIN_EPOCHS.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train a ResNet18 on the job's clean labelled faces; track the run and the model in MLflow (`train` flow)."""
    from flows.train import run_url, train_flow, train_summary

    job = _load_job_or_exit(job_file)
    cfg = settings()
    with err.status(f"training on {job.name}'s faces (MLflow: {redact(cfg.tracking_uri())})"):
        result = _run_flow(cfg, lambda: train_flow(str(job_file), epochs), job.name)
    summary = train_summary(result, run_url(cfg, result))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"train {job.name}: run {result.run_id} in {result.seconds:.0f} s", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("val/loss", "val/acc", "val/f1", "test/acc", "test/f1"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    out.print(table)
    out.print(f"test: {result.test.describe()}")
    for line in result.warnings():
        out.print(f"[yellow]{line}[/yellow]")
    out.print(f"model {job.name}-classifier version {result.registered_version}: {result.champion_reason}")
    out.print(f"the run: {summary['run_url']}")
    _print_ui_commands(cfg)


@app.command()
def review(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    port: Annotated[int | None, typer.Option(help="Overrides YOTSUBA_REVIEW_PORT.", min=1, max=65535)] = None,
    host: Annotated[str | None, typer.Option(help="Overrides YOTSUBA_REVIEW_HOST (127.0.0.1).")] = None,
) -> None:
    """Serve the review page: faces per label, likely label errors first, corrections kept in the catalog."""
    import getpass
    import socket

    import uvicorn

    from review.app import create_app

    job = _load_job_or_exit(job_file)
    cfg = settings()
    host, port = host or cfg.review_host, port or cfg.review_port
    if not cfg.catalog_path.exists():
        err.print(f"[red]no catalog at {cfg.catalog_path}: run scrape, download and prepare for {job.name} first[/red]")
        raise typer.Exit(1)
    try:  # a clear line instead of uvicorn's log when the port is taken
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        err.print(f"[red]cannot listen on {host}:{port} ({exc.strerror}): choose another with --port[/red]")
        raise typer.Exit(1) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]listening on {host}: anyone who can reach it can read and correct {job.name}[/yellow]")
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        who = "unknown"
    out.print(f"review {job.name}: http://{host}:{port}/jobs/{job.name} (likely label errors: "
              f"http://{host}:{port}/jobs/{job.name}/suspects); Ctrl+C stops", soft_wrap=True)
    uvicorn.run(create_app(cfg.data_dir, job, who), host=host, port=port, log_level="warning")


def _detector_or_none(cfg: Settings, crops: bool):
    if crops:
        return None
    from tasks.faces import FaceDetector

    return FaceDetector(cfg.cascade_file(), cfg.face_params())


@app.command()
def evaluate(
    directory: Annotated[Path, typer.Argument(help="DIR/<label>/<images>.")],
    model: Annotated[str, typer.Option(help="MLflow model URI, e.g. models:/gotoubun-classifier@champion.")],
    crops: Annotated[bool, typer.Option(help="The images are face crops: no detection.")] = False,
    out_dir: Annotated[Path, typer.Option(help="Where to write the confusion matrix and JSON.")] = Path("evaluation"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Accuracy and macro-F1 of a model on a labelled folder; confusion matrix PNG and JSON."""
    from models.inference import NoImagesToEvaluate, evaluate_folder, labelled_folder, load_model

    cfg = settings()
    try:
        labelled_folder(directory)  # before loading a model: an empty folder is a mistake, not accuracy 0.0
        loaded = load_model(model, cfg.tracking_uri())
        result = evaluate_folder(loaded, directory, _detector_or_none(cfg, crops), cfg.face_params(), crops, out_dir)
    except NoImagesToEvaluate as exc:
        err.print(f"[red]{exc}[/red]", soft_wrap=True)  # one line, however narrow the terminal
        raise typer.Exit(EXIT_BAD_INPUT) from None
    data = {"accuracy": round(result.accuracy, 4), "macro_f1": round(result.macro_f1, 4), "images": result.images,
            "no_face": result.no_face, "unreadable": len(result.unreadable), "unknown_labels": result.unknown_labels,
            "out_dir": str(out_dir)}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"accuracy {result.accuracy:.4f}, macro-F1 {result.macro_f1:.4f} over {result.images} images "
              f"({result.no_face} without a face); confusion matrix in {out_dir}")
    if result.unknown_labels:
        out.print(f"[yellow]folders the model has no label for (skipped): {', '.join(result.unknown_labels)}[/yellow]")
    if result.unreadable:
        out.print(f"[yellow]{len(result.unreadable)} unreadable images skipped (listed in evaluation.json)[/yellow]")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Pictures to label.")],
    model: Annotated[str, typer.Option(help="MLflow model URI, e.g. models:/gotoubun-classifier@champion.")],
    crops: Annotated[bool, typer.Option(help="The images are face crops: no detection.")] = False,
    out_dir: Annotated[Path, typer.Option(help="Where annotated copies and predictions.json go.")] = Path(
        "predictions"),
) -> None:
    """Find the faces in pictures and label them: annotated copies with boxes and labels, plus JSON."""
    from models.inference import load_model, predict_images

    cfg = settings()
    report = predict_images(load_model(model, cfg.tracking_uri()), images, _detector_or_none(cfg, crops),
                            cfg.face_params(), out_dir, crops=crops)
    for item in report:
        faces = ", ".join(f"{f['label']} {f['confidence']:.0%}" for f in item["faces"]) or "no face found"
        out.print(f"{item['image']}: {item['error']} (skipped)" if "error" in item else f"{item['image']}: {faces}")
    skipped = sum("error" in item for item in report)
    out.print(f"annotated pictures and predictions.json in {out_dir}"
              + (f"; {skipped} unreadable image{'s' * (skipped != 1)} skipped" if skipped else ""))


@app.command()
def suggest(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    model: Annotated[str | None, typer.Option(help="MLflow model URI (default: the job's champion).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the suggestions as JSON.")] = False,
) -> None:
    """Suggest labels for the unlabelled pool (faces from group pictures); stored apart from labelled data."""
    from models.inference import load_model, suggest_labels
    from tasks import catalog
    from tasks.prepare import unlabelled_faces

    job = _load_job_or_exit(job_file)
    cfg = settings()
    uri = model or f"models:/{job.name}-classifier@champion"
    conn = catalog.connect(cfg.catalog_path)
    try:
        rows = suggest_labels(load_model(uri, cfg.tracking_uri()), cfg.data_dir, unlabelled_faces(conn, job.name))
        catalog.store_suggestions(conn, job.name, uri, rows)
    finally:
        conn.close()
    target = cfg.data_dir / "datasets" / job.name / "suggestions.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rows, indent=2))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["suggested"]] = counts.get(row["suggested"], 0) + 1
    out.print(f"{len(rows)} unlabelled faces classified with {redact(uri)}: "
              + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())) + f"; written to {target}")


# ---------------------------------------------------------------- run, serve, demo


def _print_ui_commands(cfg: Settings) -> None:
    uri = cfg.tracking_uri()
    if uri.startswith(("http://", "https://")):
        mlflow_line = f"MLflow UI:  {redact(cfg.mlflow_ui())}"
    else:
        mlflow_line = f"MLflow UI:  mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"
    api = os.environ.get("PREFECT_API_URL")
    prefect_line = (f"Prefect UI: {redact(api.removesuffix('/api'))}" if api else
                    "Prefect UI: prefect server start   (then open http://127.0.0.1:4200: the runs of Prefect's "
                    "local API are there)")
    out.print(mlflow_line, soft_wrap=True)
    out.print(prefect_line, soft_wrap=True)


def print_nightly_summary(result) -> None:
    print_scrape_summary(result.scrape)
    print_download_summary(result.download)
    print_prepare_summary(result.prepare)
    if result.train is not None:
        metrics = result.train.metrics
        acc = f", test accuracy {metrics['test/acc']:.3f}" if "test/acc" in metrics else ""
        out.print(f"[bold]trained[/bold] ({result.decision.reason}){acc}; model version "
                  f"{result.train.registered_version}: {result.train.champion_reason}\nthe run: {result.run_url}",
                  soft_wrap=True)
    else:
        out.print(f"[bold]training skipped[/bold]: {result.decision.reason}", soft_wrap=True)
    if result.review_url:
        out.print(f"likely label errors (yotsuba review): {result.review_url}", soft_wrap=True)


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    no_train: Annotated[bool, typer.Option("--no-train", help="Scrape, download and prepare only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the `nightly` flow once, here: scrape, download, prepare, and train when enough new faces came."""
    from flows.nightly import nightly

    job = _load_job_or_exit(job_file)
    cfg = settings()
    with err.status(f"nightly run of {job_file}"):
        result = _run_flow(cfg, lambda: nightly(str(job_file), train=not no_train), job.name)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print_nightly_summary(result)
    _print_ui_commands(cfg)


@app.command()
def serve(
    job_file: Annotated[Path, typer.Argument(help="The job file.")],
    cron: Annotated[str | None, typer.Option(help="When to run (default: YOTSUBA_NIGHTLY_CRON, 03:00).")] = None,
    timezone: Annotated[str | None, typer.Option(help="The cron's timezone (default: YOTSUBA_NIGHTLY_TIMEZONE).")]
    = None,
    name: Annotated[str, typer.Option(help="The deployment's name (flow `nightly`).")] = "nightly-rescrape",
) -> None:
    """Serve `nightly` on a schedule from this process (flow.serve): one machine, no work pool or worker.
    Needs a Prefect server (PREFECT_API_URL) to keep the schedule; stop with Ctrl+C."""
    from prefect.schedules import Cron

    from flows.jobfiles import using_settings
    from flows.nightly import nightly
    from flows.preflight import check_prefect

    _load_job_or_exit(job_file)
    cfg = settings()
    check_prefect(cfg.server_check_timeout)
    schedule = Cron(cron or cfg.nightly_cron, timezone=timezone or cfg.nightly_timezone)
    with using_settings(cfg):
        nightly.serve(name=name, schedule=schedule, parameters={"job_file": str(job_file.resolve())},
                      tags=["yotsuba"])


DEFAULT_DEMO_JOB = Path(__file__).resolve().parent.parent / "examples" / "gotoubun.yaml"


# ---------------------------------------------------------------- backfill (Reddit dump files)


@app.command()
def backfill(
    job_file: Annotated[Path, typer.Argument(help="The job file; its `dumps:` name the dump files.")],
    dump: Annotated[list[str] | None, typer.Option(
        "--dump", help="A dump file or glob instead of the job's `dumps:` (relative to here); repeat.")] = None,
    force: Annotated[bool, typer.Option(help="Read again files an earlier backfill read to their end.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Read Reddit dump files (RS_/RC_YYYY-MM.zst) for the job's sources: the history past the API's 1000 items."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from flows.backfill import backfill_job
    from tasks.dump import DumpPathError
    from tasks.locks import job_lock

    job = _load_job_or_exit(job_file)
    cfg = settings()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TextColumn("{task.fields[lines]:,} lines, {task.fields[matches]:,} matches"),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=as_json or not err.is_terminal) as progress:
        task = progress.add_task("backfill", total=None, lines=0, matches=0)

        def on_progress(p) -> None:
            number = min(p.files_done + 1, p.files_total)
            progress.update(task, description=f"{Path(p.file.path).name} ({number}/{p.files_total})",
                            completed=p.compressed_read, total=p.compressed_total, lines=p.lines, matches=p.matches)

        try:
            # The job's paths are relative to the job file; --dump ones to where the command runs.
            with job_lock(cfg.data_dir, job.name):
                summary = backfill_job(cfg, job, on_progress, dumps=dump, force=force,
                                       base_dir=Path.cwd() if dump else job_file.resolve().parent)
        except DumpPathError as exc:
            err.print(f"[red]{job_file}: no dump files to read[/red]")
            for problem in exc.problems:
                print(f"{job_file}: dumps: {problem}", file=sys.stderr)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print_backfill_summary(summary)
    for error in summary.errors:
        print(f"stopped reading {error}", file=sys.stderr)  # one line each, unwrapped: path:line: reason
    if summary.errors:
        err.print("[red]what was read before each error is stored; fix or replace those files and run "
                  "backfill again[/red]")
        raise typer.Exit(1)


def print_backfill_summary(summary) -> None:
    lines = sum(f.lines for f in summary.files)
    table = Table(title=f"backfill {summary.job}: {summary.new_candidates} new candidates, {summary.known} already "
                        f"known; {summary.bytes / 1e6:,.0f} MB of NDJSON, {lines:,} lines in {summary.seconds:.1f} s "
                        f"({summary.mb_per_second:,.0f} MB/s)", title_justify="left")
    for column in ("label", "source", "subreddit", "threads", "read", "new", "known"):
        table.add_column(column, justify="left" if column in ("label", "source", "subreddit") else "right")
    for s in summary.sources:
        threads = str(s.threads) if s.kind == "comment_links" else "-"
        table.add_row(s.label, s.kind, f"r/{s.subreddit}", threads, str(s.matched), str(s.new_candidates),
                      str(s.known))
    out.print(table)
    files = Table(title="dump files", title_justify="left")
    for column in ("file", "kind", "status", "MB", "lines", "matches"):
        files.add_column(column, justify="right" if column in ("MB", "lines", "matches") else "left")
    for f in summary.files:
        status = f"[red]{f.status}[/red]" if f.error else f.status
        files.add_row(Path(f.path).name, f.kind, status, f"{f.bytes / 1e6:,.1f}", f"{f.lines:,}", f"{f.matches:,}")
    out.print(files)
    if summary.skipped:
        out.print(_reason_table("skipped, by reason", summary.skipped))
    skipped_lines = sum(f.skipped_lines for f in summary.files)
    if skipped_lines:
        out.print(f"[yellow]{skipped_lines} lines could not be used and were skipped (see the log)[/yellow]")


@app.command()
def demo(
    images_dir: Annotated[Path | None, typer.Option(
        "--images", help="DIR/<label>/<images>: real pictures to serve (default: drawn characters).",
        exists=True, file_okay=False)] = None,
    job_file: Annotated[Path, typer.Option("--job", help="Job to demo with drawn characters.")] = DEFAULT_DEMO_JOB,
    per_source: Annotated[int, typer.Option(help="Drawn images planted per source.", min=1, max=200)] = 8,
    per_label: Annotated[int | None, typer.Option(help="With --images: at most this many per label.", min=1)]
    = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Stop after prepare.")] = False,
    backend: Annotated[str, typer.Option(
        help="arctic_shift: read the fake through the key-free archive, as a new user does; reddit: through "
             "Reddit's API (PRAW), as a user with keys does.")] = "arctic_shift",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run `nightly` offline against a built-in fake Reddit: no credentials, no internet."""
    from flows.demo import run_demo

    job = None if images_dir else _load_job_or_exit(job_file)
    cfg = settings() if state.data_dir else read_settings(data_dir=Path("yotsuba-demo"))
    if not as_json:
        if images_dir:
            err.print(f"[bold]demo[/bold]: serving the pictures of {images_dir} through a fake Reddit on 127.0.0.1 "
                      f"(read as {backend})")
        else:
            err.print(f"[bold]demo[/bold]: drawn characters served through a fake Reddit on 127.0.0.1 (read as "
                      f"{backend}); the face "
                      "cascade does not fire on simple drawings, so each image is taken as a face crop "
                      "(faces: crops_unchecked). Use --images DIR for real pictures.")
    if backend not in ("arctic_shift", "reddit"):
        err.print(f"[red]--backend {backend}: expected arctic_shift or reddit[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    result = _run_flow(cfg, lambda: run_demo(cfg, job, images_dir, images_per_source=per_source,
                                             per_label=per_label, train=not no_train, backend=backend))
    if as_json:
        print(json.dumps({"job_file": str(result.job_file), "planted": dict(result.planted),
                          **result.nightly.to_dict()}, indent=2))
        return
    out.print(f"planted {sum(result.planted.values())} images "
              f"({', '.join(f'{n} via {k}' for k, n in sorted(result.planted.items()))}) for job {result.job.name}")
    print_nightly_summary(result.nightly)
    out.print(f"job file: {result.job_file.resolve()}\ncatalog:  {cfg.catalog_path.resolve()}", soft_wrap=True)
    _print_ui_commands(cfg)


if __name__ == "__main__":
    app()

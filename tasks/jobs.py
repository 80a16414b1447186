"""Job files: which labels to build and where on Reddit to find them.

One pydantic schema, read from YAML or JSON. The reference project's JSON format
(`{"labels": [...], "jobs": [{"TYPE", "SUBREDDIT", "SEARCH_QUERY", "THREAD_FLAIR", "LABEL"}]}`)
is converted on load, so its users can bring their jobs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import UserError

SUBREDDIT_RE = r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$"
JOB_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LABEL_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REDDIT_LISTING_CAP = 1000  # Reddit never returns more than this from one listing or search.


class JobFileError(UserError):
    """A job file that cannot be used. `problems` holds one line per problem: `field: reason`."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))

    def lines(self) -> list[str]:
        return [f"{self.path}: {problem}" for problem in self.problems]


class NsfwPolicy(StrEnum):
    exclude = "exclude"
    include = "include"
    only = "only"


class Listing(StrEnum):
    new = "new"
    hot = "hot"
    top = "top"


class TimeFilter(StrEnum):
    all = "all"
    year = "year"
    month = "month"
    week = "week"
    day = "day"
    hour = "hour"


class SearchSort(StrEnum):
    new = "new"
    relevance = "relevance"
    top = "top"
    comments = "comments"


class Backend(StrEnum):
    """Where the three source kinds read Reddit from."""

    auto = "auto"  # Reddit's API when keys are configured, else Arctic Shift
    reddit = "reddit"  # Reddit's API through PRAW (needs an approved app's keys)
    arctic_shift = "arctic_shift"  # the Arctic Shift archive: no keys, no 1000-item cap, sorted by time only


class FaceMode(StrEnum):
    """What a source's images are, for face detection (tasks.faces)."""

    detect = "detect"  # pictures of any kind: find the faces
    crops = "crops"  # already face crops: pad each, then check that the cascade finds exactly one face
    crops_unchecked = "crops_unchecked"  # already face crops: take each whole, no detection


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _strip_subreddit(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        for prefix in ("/r/", "r/"):
            if value.lower().startswith(prefix):
                value = value[len(prefix) :]
    return value


class _SourceBase(_Strict):
    subreddit: Annotated[str, Field(pattern=SUBREDDIT_RE, description="Without the r/ prefix.")]
    limit: Annotated[int | None, Field(ge=1, le=REDDIT_LISTING_CAP)] = None
    faces: FaceMode | None = Field(None, description="What the images are (default: the job's options.faces).")

    _strip = field_validator("subreddit", mode="before")(_strip_subreddit)


class SubredditPosts(_SourceBase):
    """Image posts of a subreddit (typically a character's own)."""

    kind: Literal["subreddit_posts"] = "subreddit_posts"
    listing: Listing = Listing.new
    time_filter: TimeFilter = TimeFilter.all
    flairs: list[str] = Field(default_factory=list, description="Keep posts with one of these flairs.")

    def identity(self) -> str:
        return f"{self.listing.value}:{self.time_filter.value if self.listing == Listing.top else ''}"


class TitleMentions(_SourceBase):
    """Posts of a subreddit (typically the show's) whose title names the label or an alias."""

    kind: Literal["title_mentions"] = "title_mentions"
    query: str | None = Field(None, description="Reddit search query; default: the label's names in titles.")
    sort: SearchSort = SearchSort.new
    time_filter: TimeFilter = TimeFilter.all
    flairs: list[str] = Field(default_factory=list)

    def identity(self) -> str:
        return f"{self.query or ''}:{self.sort.value}:{self.time_filter.value}"


class CommentLinks(_SourceBase):
    """Links in the comments of discussion threads whose link text names the label or an alias."""

    kind: Literal["comment_links"] = "comment_links"
    query: Annotated[str, Field(min_length=1, description="Reddit search query that finds the threads.")]
    flair: str | None = Field(None, description="Keep threads with this flair only.")
    sort: SearchSort = SearchSort.new
    time_filter: TimeFilter = TimeFilter.all
    replace_more_limit: Annotated[int | None, Field(ge=0)] = Field(
        None, description="'load more comments' stubs expanded per thread (None: the job's default)."
    )

    def identity(self) -> str:
        return f"{self.query}:{self.flair or ''}:{self.sort.value}:{self.time_filter.value}"


Source = Annotated[SubredditPosts | TitleMentions | CommentLinks, Field(discriminator="kind")]
SOURCE_KINDS = ("subreddit_posts", "title_mentions", "comment_links")


def source_key(label: str, source: SubredditPosts | TitleMentions | CommentLinks) -> str:
    """A stable id for one (label, source): what the catalog keys its incremental state on.

    `limit` is left out on purpose: raising a limit must not forget what was already seen.
    """
    ident = f"{source.kind}:{source.subreddit.lower()}:{source.identity()}:{label}"
    return f"{source.kind}:{source.subreddit.lower()}:" + hashlib.sha1(ident.encode()).hexdigest()[:10]


class Label(_Strict):
    name: Annotated[str, Field(pattern=LABEL_RE, description="Class name: letters, digits, _ . -")]
    aliases: list[Annotated[str, Field(min_length=2)]] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The label and its aliases: what a title or link text must mention."""
        return [self.name, *self.aliases]


class Options(_Strict):
    backend: Backend = Backend.auto
    since: datetime.date | None = Field(
        None, description="Read no post older than this date (UTC); on Arctic Shift the first pass goes back to it.")
    nsfw: NsfwPolicy = NsfwPolicy.exclude
    faces: FaceMode = FaceMode.detect
    max_posts_per_source: Annotated[int, Field(ge=1, le=REDDIT_LISTING_CAP)] = REDDIT_LISTING_CAP
    max_candidates_per_source: Annotated[int | None, Field(ge=1)] = None
    replace_more_limit: Annotated[int | None, Field(ge=0)] = 32
    threads_per_source: Annotated[int, Field(ge=1, le=REDDIT_LISTING_CAP)] = 100


class Job(_Strict):
    """A job. `dumps` lists Reddit dump files (paths or globs; relative ones are relative to the job file) that
    `yotsuba backfill` reads to go past the API's 1000-item cap. It is a job-level list, not a source kind: a
    dump holds every subreddit, so the job's own sources say what to keep, and one pass over a file feeds all
    three kinds (tasks.dump)."""

    name: Annotated[str, Field(pattern=JOB_NAME_RE, description="lowercase slug; names the MLflow experiment")]
    description: str | None = None
    options: Options = Field(default_factory=Options)
    labels: Annotated[list[Label], Field(min_length=1)]
    dumps: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Reddit dump files (RS_*.zst, RC_*.zst): paths or globs, for backfill."
    )

    @field_validator("dumps", mode="before")
    @classmethod
    def _one_dump_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_are_unambiguous(self) -> Job:
        owner: dict[str, str] = {}
        defined: set[str] = set()
        for label in self.labels:
            if label.name in defined:
                raise ValueError(f"label {label.name!r} is defined twice")
            defined.add(label.name)
            for name in label.names:
                key = normalise_name(name)
                if key in owner and owner[key] != label.name:
                    raise ValueError(
                        f"name {name!r} belongs to both {owner[key]!r} and {label.name!r}; "
                        "a title or link naming it could not be labelled"
                    )
                owner[key] = label.name
        if not any(label.sources for label in self.labels):
            raise ValueError("no label has a source: add `sources` to at least one label")
        return self

    @property
    def since_utc(self) -> float | None:
        """`options.since` as epoch seconds (midnight UTC), the oldest post any source reads."""
        since = self.options.since
        return None if since is None else datetime.datetime(since.year, since.month, since.day,
                                                           tzinfo=datetime.UTC).timestamp()

    def iter_sources(self) -> Iterator[tuple[Label, SubredditPosts | TitleMentions | CommentLinks]]:
        for label in self.labels:
            for source in label.sources:
                yield label, source

    def label(self, name: str) -> Label:
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(name)

    def to_data(self) -> dict[str, Any]:
        """The job as plain data without defaults (what a person would write), `kind` always kept."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        for label, label_data in zip(self.labels, data["labels"], strict=True):
            label_data["sources"] = [
                {"kind": source.kind, **source.model_dump(mode="json", exclude_defaults=True)}
                for source in label.sources
            ]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True)

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, ensure_ascii=False) + "\n"


def normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


# ---------------------------------------------------------------- loading


def load_job(path: str | Path) -> Job:
    """Read a job file (YAML, JSON, or the reference project's JSON). Raises JobFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(path, ["file: not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(path, [f"file: cannot be read ({exc})"]) from None
    return parse_job(text, path)


def parse_job(text: str, path: str | Path = "<job>") -> Job:
    data = _parse_document(text, path)
    if data is None:  # only comments, or a bare `null`
        raise JobFileError(path, ["file: is empty (no job in it, only comments or null)"])
    if not isinstance(data, dict):
        raise JobFileError(path, [f"file: a job is a mapping at the top level, got {type(data).__name__}"])
    if is_legacy_job(data):
        data = convert_legacy_job(data, default_name=Path(str(path)).stem, path=path)
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(path, format_validation_error(exc)) from None


def _parse_document(text: str, path: str | Path) -> Any:
    if not text.strip():
        raise JobFileError(path, ["file: is empty"])
    if str(path).endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise JobFileError(path, [f"file: invalid JSON at {where}: {exc.msg}"]) from None
    loader = yaml.SafeLoader(text)  # JSON is YAML too, for files without a .json suffix
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, path, {}, set())
        if expanded > MAX_EXPANDED_NODES:
            raise JobFileError(path, [f"file: its aliases (*name) expand to more than {MAX_EXPANDED_NODES:,} values, "
                                      "far more than any job has (a YAML alias bomb?): write the values out"])
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise JobFileError(path, [f"file: invalid YAML{where}: {reason}"]) from None
    finally:
        loader.dispose()


# A "billion laughs" job file (aliases of aliases) is a few hundred bytes that expand to gigabytes; a real job
# with a thousand labels is a few tens of thousands of values.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: yaml.Node, path: str | Path, sizes: dict[int, int], visiting: set[int]) -> int:
    """How many values `node` becomes once every alias is expanded, counted over the composed graph (where an
    alias is the same node object again) without expanding anything; stops early past the bound."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in visiting:
        raise JobFileError(path, ["file: an alias (*name) refers to the value that contains it"])
    visiting.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, path, sizes, visiting)
        if total > MAX_EXPANDED_NODES:
            break
    visiting.discard(key)
    sizes[key] = total
    return total


def format_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = _format_loc(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown source kind {err.get('input', {}).get('kind')!r}; expected one of {', '.join(SOURCE_KINDS)}"
        elif err["type"] == "union_tag_not_found":
            msg = f"a source needs `kind`: one of {', '.join(SOURCE_KINDS)}"
        elif err["type"] == "string_pattern_mismatch":
            msg = _pattern_hint(loc, err.get("input"))
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{loc or 'job'}: {msg}")
    return problems


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in SOURCE_KINDS:
            continue  # pydantic's discriminated-union branch name: noise for a person
        else:
            out += f".{part}" if out else str(part)
    return out


def _pattern_hint(loc: str, value: Any) -> str:
    if loc.endswith("subreddit"):
        return f"{value!r} is not a subreddit name (2-21 letters, digits or _, no r/ prefix needed)"
    if loc == "name":
        return f"{value!r} is not a job name (lowercase letters, digits, _ or -; it names the MLflow experiment)"
    if loc.endswith(".name"):
        return f"{value!r} is not a label name (letters, digits, _ . -; no spaces: use aliases for spellings)"
    return f"{value!r} has the wrong form"


# ---------------------------------------------------------------- the reference project's format

LEGACY_KEYS = {"TYPE", "SUBREDDIT", "SEARCH_QUERY", "THREAD_FLAIR", "LABEL"}


def is_legacy_job(data: dict[str, Any]) -> bool:
    jobs = data.get("jobs")
    return isinstance(jobs, list) and any(isinstance(j, dict) and "TYPE" in j for j in jobs)


def convert_legacy_job(data: dict[str, Any], default_name: str, path: str | Path = "<job>") -> dict[str, Any]:
    """Map the reference project's session JSON onto our schema (as plain data, validated later).

    - comment_links keeps its meaning (threads found by SEARCH_QUERY, links whose text names LABEL).
    - subreddit_posts without SEARCH_QUERY reads the subreddit's `new` listing (flair-filtered).
    - subreddit_posts with SEARCH_QUERY searched the subreddit for it: that is our title_mentions, and the
      query becomes an alias of the label so the title check accepts what the old job accepted.
    Values may be lists, zipped together as the reference project did.
    """
    problems: list[str] = []
    labels: dict[str, dict[str, Any]] = {}
    names = data.get("labels")
    if names is not None and not (isinstance(names, list) and all(_is_name(n) for n in names)):
        # a bare string would become one label per letter, a number a TypeError, a null the label "None"
        problems.append(f"labels: a list of label names, got {_legacy_value(names)}")
        names = []
    for name in names or []:
        labels[str(name)] = {"name": str(name), "aliases": [], "sources": []}
    for index, entry in enumerate(data["jobs"]):
        where = f"jobs[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        unknown = set(entry) - LEGACY_KEYS
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        missing = {"TYPE", "SUBREDDIT", "LABEL"} - set(entry)
        if missing:
            problems.append(f"{where}: missing keys {sorted(missing)}")
            continue
        try:
            rows = list(_unzip_legacy(entry))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for sub, query, flair, label in rows:
            if entry["TYPE"] not in ("subreddit_posts", "comment_links"):
                problems.append(f"{where}.TYPE: {entry['TYPE']!r} is not subreddit_posts or comment_links")
                break
            if not _is_name(label):
                problems.append(f"{where}.LABEL: a label name (or a list of them), got {_legacy_value(label)}")
                continue
            label = str(label)
            target = labels.setdefault(label, {"name": label, "aliases": [], "sources": []})
            if entry["TYPE"] == "comment_links":
                if not query:
                    problems.append(f"{where}.SEARCH_QUERY: comment_links needs a search query")
                    continue
                source = {"kind": "comment_links", "subreddit": sub, "query": query}
                if flair:
                    source["flair"] = flair
            elif query:
                source = {"kind": "title_mentions", "subreddit": sub, "query": query}
                if flair:
                    source["flairs"] = [flair]
                if normalise_name(str(query)) != normalise_name(label) and query not in target["aliases"]:
                    target["aliases"].append(str(query))
            else:
                source = {"kind": "subreddit_posts", "subreddit": sub}
                if flair:
                    source["flairs"] = [flair]
            target["sources"].append(source)
    if problems:
        raise JobFileError(path, problems)
    name = re.sub(r"[^a-z0-9_-]+", "-", default_name.lower()).strip("-") or "job"
    return {"name": name, "labels": list(labels.values())}


def _is_name(value: Any) -> bool:
    """A label name as the reference project wrote them: a non-empty string (numbers were used too)."""
    return (isinstance(value, str) and bool(value.strip())) or (isinstance(value, int) and not isinstance(value, bool))


def _legacy_value(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:60]}"


def _unzip_legacy(entry: dict[str, Any]) -> Iterator[tuple[Any, Any, Any, Any]]:
    keys = ("SUBREDDIT", "SEARCH_QUERY", "THREAD_FLAIR", "LABEL")
    values = [entry.get(k) for k in keys]
    if any(isinstance(v, list) for v in values):
        lengths = {len(v) for v in values if isinstance(v, list)}
        if len(lengths) > 1:
            # The reference project zipped these and silently dropped the extras: say so instead.
            raise ValueError(f"the lists in {', '.join(keys)} have different lengths {sorted(lengths)}")
        length = lengths.pop()
        columns = [v if isinstance(v, list) else [v] * length for v in values]
        yield from zip(*columns, strict=False)
    else:
        yield tuple(values)  # type: ignore[misc]


# ---------------------------------------------------------------- building from flags


def build_job(*, name: str, labels: list[str], aliases: list[tuple[str, str]] | None = None,
              character_subs: list[tuple[str, str]] | None = None, show: str | None = None,
              thread_query: str | None = None, thread_sub: str | None = None,
              thread_flair: str | None = None, nsfw: str = "exclude") -> Job:
    """A job from the answers of `yotsuba job new`: per label, its own subreddit (subreddit_posts),
    the show's subreddit (title_mentions) and the discussion threads (comment_links)."""
    problems = []
    known = set(labels)
    for option, pairs in (("--alias", aliases or []), ("--character-sub", character_subs or [])):
        problems += [f"{option} {lbl}={value}: {lbl!r} is not one of the labels" for lbl, value in pairs
                     if lbl not in known]
    if thread_query and not (thread_sub or show):
        problems.append("--thread-query needs --thread-sub or --show (the subreddit of the threads)")
    if not (show or thread_query or character_subs):
        problems.append("no sources: give --show, --thread-query or --character-sub")
    if problems:
        raise JobFileError("<job new>", problems)
    data: dict[str, Any] = {"name": name, "options": {"nsfw": nsfw}, "labels": []}
    for lbl in labels:
        sources: list[dict[str, Any]] = [
            {"kind": "subreddit_posts", "subreddit": sub} for owner, sub in character_subs or [] if owner == lbl
        ]
        if show:
            sources.append({"kind": "title_mentions", "subreddit": show})
        if thread_query:
            thread_source = {"kind": "comment_links", "subreddit": thread_sub or show, "query": thread_query}
            if thread_flair:
                thread_source["flair"] = thread_flair
            sources.append(thread_source)
        data["labels"].append({"name": lbl, "aliases": [a for owner, a in aliases or [] if owner == lbl],
                               "sources": sources})
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise JobFileError("<job new>", format_validation_error(exc)) from None

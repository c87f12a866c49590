"""The config file: defaults come from the records, every problem names its key."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from aggregator import dedup
from aggregator.config import (
    Config,
    DedupSettings,
    FeedSettings,
    FetchSettings,
    OutputSettings,
    load_config,
)
from aggregator.errors import ConfigError
from aggregator.models import ExcerptOptions, SelectRules, Source
from tests.helpers import write_config

MINIMAL = """
[feed]
title = "x"
[[sources]]
name = "a"
url = "https://a.example/feed"
[[sources]]
name = "b"
url = "https://b.example/"
[sources.select]
entry = ".post"
"""


def declared_content() -> object:
    return {f.name: f.default for f in fields(Config)}["content"]


def test_what_the_file_leaves_out_is_the_records_default(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL))
    assert config.fetch == FetchSettings()
    assert config.dedup == DedupSettings()
    assert config.excerpt == ExcerptOptions()
    a, b = config.sources
    assert a == Source(name="a", url="https://a.example/feed")
    assert b.select == SelectRules(entry=".post")
    link = "http://localhost/"
    # The feed's id and self link are derived from its link.
    assert config.feed == FeedSettings(title="x", link=link, id=link, self_url=link + "feed.atom")
    assert config.content == declared_content()
    declared = {f.name: f.default for f in fields(Config)}
    assert config.server_host == declared["server_host"]
    assert config.server_port == declared["server_port"]
    # dedup's own defaults, for callers without a config, are the [dedup] ones
    options, settings = dedup.DedupOptions(), DedupSettings()
    assert (options.near_duplicates, options.threshold) == (
        settings.near_duplicates,
        settings.threshold,
    )


def test_schedule_interval_applies_where_a_source_sets_none(tmp_path: Path) -> None:
    body = MINIMAL.replace('[[sources]]\nname = "b"', '[[sources]]\ninterval = "30m"\nname = "b"')
    config = load_config(write_config(tmp_path, '[schedule]\ninterval = "2h"\n' + body))
    assert [s.interval_seconds for s in config.sources] == [7200, 1800]


def test_values_given_replace_the_defaults(tmp_path: Path) -> None:
    body = MINIMAL + "[fetch]\ntimeout = 5\nper_host = 4\n[dedup]\nthreshold = 0.9\n"
    config = load_config(write_config(tmp_path, body))
    assert config.fetch.timeout == 5.0 and isinstance(config.fetch.timeout, float)
    assert config.fetch.per_host == 4 and config.dedup.threshold == 0.9


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[fetch]\nmax_workers = 0\n", "fetch.max_workers: Input should be greater than or equal"),
        ('[fetch]\ntimeout = "20"\n', "fetch.timeout: Input should be a valid number"),
        ("[excerpt]\nmax_chars = true\n", "excerpt.max_chars: Input should be a valid integer"),
        ('[schedule]\ninterval = "10s"\n', "schedule.interval: interval must be at least 60"),
        ('[server]\nhots = "x"\n', "server.hots: unknown key"),
        ("[dedup]\nthreshold = 2\n", "dedup.threshold: Input should be less than or equal to 1"),
        ('[store]\nurl = "mysql://db/x"\n', "store.url: not a PostgreSQL URL"),
        (
            '[store]\npath = "a.db"\nurl = "postgresql://db/x"\n',
            "store: both path (SQLite) and url (PostgreSQL) are set; keep only one",
        ),
    ],
)
def test_a_mistake_names_its_key(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, MINIMAL + extra))
    assert expected in str(exc.value) and str(tmp_path) in str(exc.value)


def test_every_problem_is_listed_at_once_with_the_nearest_key(tmp_path: Path) -> None:
    body = MINIMAL.replace('title = "x"', 'titel = "x"').replace(
        'name = "b"', 'name = "b"\ncolour = 1\nmax_entries = 0\ncatgory = "x"'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, body))
    lines = str(exc.value).splitlines()
    assert all(line.startswith(f"{tmp_path / 'config.toml'}: ") for line in lines)
    problems = sorted(line.split(": ", 1)[1] for line in lines)
    assert problems == [
        "feed.titel: unknown key (did you mean title?)",
        "feed.title: Field required",
        "sources[1] ('b').catgory: unknown key (did you mean category?)",
        "sources[1] ('b').colour: unknown key",
        "sources[1] ('b').max_entries: Input should be greater than or equal to 1",
    ]


def test_per_source_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = MINIMAL.replace(
        'url = "https://a.example/feed"',
        'url = "https://a.example/feed"\nenabled = false\ntitle = "Site A"\n'
        'include = "(?i)python"\nexclude = ["sponsored", "^Ad:"]\n'
        'headers = { Authorization = "Bearer ${A_TOKEN}" }',
    )
    config = load_config(write_config(tmp_path, body + '[store]\nkeep = "365d"\n'))
    a, b = config.sources
    assert (a.enabled, a.title, a.include, a.exclude) == (
        False,
        "Site A",
        ("(?i)python",),
        ("sponsored", "^Ad:"),
    )
    # The value is kept as written: the secret is read when the request is made.
    assert a.headers == (("Authorization", "Bearer ${A_TOKEN}"),)
    assert (b.enabled, b.include, b.headers) == (True, (), ())
    assert config.store_keep_seconds == 365 * 86400


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('include = "("', "include: invalid regular expression '('"),
        ('headers = { "Bad Name" = "x" }', "headers: invalid header name 'Bad Name'"),
        ("enabled = 0", "enabled: Input should be a valid boolean"),
    ],
)
def test_a_bad_source_option_names_its_key(tmp_path: Path, line: str, expected: str) -> None:
    body = MINIMAL.replace('name = "a"', f'name = "a"\n{line}')
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, body))
    assert expected in str(exc.value)


OUTPUTS = """
[feed]
title = "x"
[output]
websub_hub = "https://hub.example/"
[[sources]]
name = "a"
url = "https://a.example/feed"
[[outputs]]
name = "ml"
title = "Machine learning"
categories = ["ML", "ai"]
[[outputs]]
name = "team-a"
title = "Team A"
sources = ["a"]
max_entries = 20
"""


def test_outputs_and_the_hub_are_read(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, OUTPUTS))
    assert config.websub_hub == "https://hub.example/"
    ml, team = config.outputs
    assert ml == OutputSettings(name="ml", title="Machine learning", categories=("ML", "ai"))
    assert (team.name, team.sources, team.max_entries, team.categories) == (
        "team-a",
        ("a",),
        20,
        (),
    )
    assert load_config(write_config(tmp_path, MINIMAL)).outputs == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "ml"', 'name = "../x"'), "outputs[0].name: String should match pattern"),
        (('name = "ml"', 'name = "feed"'), "outputs[0] ('feed').name: 'feed' is taken"),
        (('name = "team-a"', 'name = "ml"'), "outputs[1] ('ml').name: duplicate output name"),
        (('sources = ["a"]', 'sources = ["b"]'), "outputs[1] ('team-a').sources: no source"),
        (("max_entries = 20", "max_entries = 0"), "outputs[1].max_entries"),
        (('"https://hub.example/"', '"ftp://hub"'), "output.websub_hub: a WebSub hub is"),
        (('title = "Team A"\n', ""), "outputs[1].title: Field required"),
    ],
)
def test_a_wrong_output_is_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, OUTPUTS.replace(*change)))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("feed", "output", "expected"),
    [
        ('self_url = "feed.atom"', "", "feed.self_url: must be an absolute http(s) URL"),
        ('self_url = "ftp://x.example/feed.atom"', "", "feed.self_url: must be an absolute"),
        ('author = "<b>Bold</b>"', "", "feed.author: must be a plain name, or 'Name <email"),
        ('author = "Ann\\nLee"', "", "feed.author: must be one line of printable text"),
        ("", 'content = "html"', "output.content: Input should be 'excerpt' or 'full'"),
    ],
)
def test_the_output_keys_are_checked(tmp_path: Path, feed: str, output: str, expected: str) -> None:
    body = MINIMAL.replace("[feed]\n", f"[feed]\n{feed}\n", 1) + f"[output]\n{output}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, body))
    assert expected in str(exc.value)


def test_the_output_keys_given(tmp_path: Path) -> None:
    feed = 'author = "Ann Lee <ann@example.org>"\nself_url = "https://x.example/pub/feed.atom"'
    body = MINIMAL.replace("[feed]\n", f"[feed]\n{feed}\n", 1) + '[output]\ncontent = "full"\n'
    config = load_config(write_config(tmp_path, body))
    assert config.feed.author == "Ann Lee <ann@example.org>"
    assert config.feed.self_url == "https://x.example/pub/feed.atom"
    assert config.content == "full"


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="config file not found: create one with `aggregator init`"
    ):
        load_config(tmp_path / "nope.toml")


def test_the_store_is_a_sqlite_file_unless_a_database_url_is_given(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL))
    assert config.store_url is None and config.store_path == tmp_path / "data" / "aggregator.db"
    config = load_config(write_config(tmp_path, MINIMAL + '[store]\npath = "x/s.db"\n'))
    assert config.store_url is None and config.store_path == tmp_path / "x" / "s.db"
    url = "postgresql://agg@db.example:5433/feeds"
    config = load_config(write_config(tmp_path, MINIMAL + f'[store]\nurl = "{url}"\n'))
    assert config.store_url == url

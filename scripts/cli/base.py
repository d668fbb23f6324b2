"""What every ``pageqa`` command shares: the typer app and its groups, the consoles, the error handling, the
``--api`` options. The commands live in ``scripts/cli/*.py``; ``scripts.cli`` is the entry point."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pageqa.domain import LANES, split_lanes
from pageqa.errors import ConfigError, PageQAError, printable
from pageqa.settings import get_settings

if TYPE_CHECKING:
    from scripts.cli.client import ApiClient

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="The ``pageqa`` command line. Each command's help text is its docstring.")
services_app = typer.Typer(no_args_is_help=True, help="Manage the embedded PostgreSQL and Redis.")
models_app = typer.Typer(no_args_is_help=True, help="Model checkpoints.")
app.add_typer(services_app, name="services")
app.add_typer(models_app, name="models")
index_app = typer.Typer(no_args_is_help=True, help="The first stage's pgvector HNSW index.")
app.add_typer(index_app, name="index")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables into docs/.")
app.add_typer(bench_app, name="bench")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP service (pageqa api), one tenant each.")
app.add_typer(keys_app, name="keys")
# emoji=False: "q.jsonl:100: ..." must not print as "q.jsonl💯 ..." (rich reads ":100:" as an emoji code)
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)

def command(group: typer.Typer, *args, **kwargs):
    """``group.command`` whose PageQAError becomes one line on stderr and exit code 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(*a, **k):
            try:
                return fn(*a, **k)
            except PageQAError as exc:
                err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # a file name is no markup
                raise typer.Exit(1) from None

        return group.command(*args, **kwargs)(run)

    return decorate


def shown(text: str) -> str:
    """A stored name (corpus, tenant, key, document, file) as the CLI prints it: inert. Each unprintable character
    (a bidi override, an escape sequence, a newline) is written as its escape by :func:`pageqa.errors.printable`,
    as in error messages, and rich markup is text. New names cannot hold such characters
    (:func:`pageqa.domain.name_problem`), names stored before that rule still can."""
    return escape(printable(text))


ApiUrl = Annotated[str | None, typer.Option(
    "--api", metavar="URL", help="Call the pageqa HTTP API at URL instead of the database (default: PAGEQA_API_URL).")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", metavar="KEY", help="API key for --api (default: PAGEQA_API_KEY; pageqa keys create).")]


def api_client(api: str | None, api_key: str | None, *, tenant: str | None = None) -> ApiClient | None:
    """The HTTP API client when ``--api`` or PAGEQA_API_URL names a server, else None (the command works on the
    database).

    Raises:
        ConfigError: no API key for the server, or ``--tenant`` given with it.
    """
    settings = get_settings()
    url = api or settings.api_url
    if not url:
        return None
    key = api_key or settings.api_key
    if not key:
        raise ConfigError(f"{url} needs an API key: --api-key KEY or PAGEQA_API_KEY (pageqa keys create)")
    if tenant is not None:
        raise ConfigError("--tenant does not go with --api: the API key names the tenant")
    from scripts.cli.client import ApiClient

    return ApiClient(url, key)


def parse_lanes(text: str | None) -> list[str] | None:
    """``visual,lexical,dense`` → a list of lane names; None for None.

    Raises:
        ConfigError: an unknown lane name.
    """
    if text is None:
        return None
    lanes = split_lanes(text)
    unknown = [x for x in lanes if x not in LANES]
    if unknown or not lanes:
        raise ConfigError(f"--lanes takes a comma-separated subset of {', '.join(LANES)}, not {text!r}")
    return lanes

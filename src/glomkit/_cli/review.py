"""``glomkit review OUT/<stem>`` (the browser review app) and ``glomkit recount OUT/<stem>``."""

from __future__ import annotations

from pathlib import Path

import click

from glomkit import GlomkitError

PATH = click.Path(path_type=Path)


@click.command("review")
@click.argument("folder", type=PATH)
@click.option("--slide", type=PATH, default=None, help="The slide (default: the source in summary.json).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 = any free port."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but this machine lets other computers in.",
)
@click.option(
    "--allow-host",
    "allow_host",
    multiple=True,
    metavar="NAME",
    help="Also answer requests that name this host (repeatable), e.g. the machine's name or address "
    "when --host 0.0.0.0; '*.example.org' allows its subdomains. Other Host headers are refused.",
)
@click.option("--reviewer", default=None, help="Name saved with each correction (default: the user name).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
def review_cmd(
    folder: Path,
    slide: Path | None,
    port: int,
    host: str,
    allow_host: tuple[str, ...],
    reviewer: str | None,
    open_browser: bool,
):
    """Review and correct a slide's results in the browser; saves to FOLDER/review/ as you go."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise GlomkitError(
            f"glomkit review needs the 'review' extra ({exc.name} is missing): pip install 'glomkit[review]'"
        ) from None
    from glomkit.review.lock import ReviewLock
    from glomkit.review.server import (
        LOCAL_HOSTS,
        WILDCARD_ADDRESSES,
        allowed_hosts,
        bind,
        create_app,
        make_server,
        url_of,
    )
    from glomkit.review.session import ReviewSession, read_summary

    allowed = allowed_hosts(host, allow_host)
    if not Path(folder).is_dir():
        raise GlomkitError(f"{folder}: no such output folder")
    read_summary(Path(folder))  # a glomkit output folder, before a lock is made in it
    with ReviewLock(folder):  # one server per folder: a second would overwrite this one's changes
        session = ReviewSession(folder, slide=slide, reviewer=reviewer)
        if session.run_changed:
            from glomkit.review.provenance import stale_message

            click.echo(f"glomkit: warning: {stale_message(session.out_dir)}", err=True)
        bare = host.strip("[]")
        if bare not in {h.strip("[]") for h in LOCAL_HOSTS}:
            how = (
                f"; they must name it as one of: {', '.join(allow_host)}"
                if allow_host
                else "; give its name with --allow-host NAME"
                if bare in WILDCARD_ADDRESSES
                else ""
            )
            click.echo(
                f"glomkit: warning: listening on {host}: other computers can open this slide and "
                f"change its review{how}",
                err=True,
            )
        app = create_app(session, allowed_hosts=allowed)
        sock = bind(host, port)
        url = url_of(sock, "127.0.0.1" if bare in WILDCARD_ADDRESSES else host)
        what = "resuming" if session.resumed else "starting"
        click.echo(
            f"{what} the review of {session.stem}: {len(session.items)} detections, saved to {session.geojson_path}"
        )
        click.echo(f"open {url}  (Ctrl+C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        make_server(app).run(sockets=[sock])


@click.command("recount")
@click.argument("folder", type=PATH)
@click.option(
    "--annotations",
    type=PATH,
    default=None,
    help="An edited GeoJSON or ImageScope XML (default: FOLDER/review/<stem>_reviewed.geojson).",
)
@click.option("--slide", type=PATH, default=None, help="The slide, for the report's thumbnail.")
def recount_cmd(folder: Path, annotations: Path | None, slide: Path | None) -> None:
    """Count again from reviewed annotations: FOLDER/review/summary.json and report.html."""
    from glomkit.cohort import recount_slide
    from glomkit.review.recount import describe

    summary = recount_slide(folder, annotations=annotations, slide=slide)
    if summary["review"].get("run_changed"):
        from glomkit.review.provenance import stale_message

        click.echo(f"glomkit: warning: {stale_message(Path(folder))}", err=True)
    unknown = summary["review"]["labels_outside_scheme"]
    if unknown:
        click.echo(
            f"glomkit: warning: labels outside the scheme, not counted as glomeruli: {', '.join(map(repr, unknown))}",
            err=True,
        )
    if not summary["review"].get("n_shapes"):
        where = annotations or Path(folder) / "review"
        click.echo(
            f"glomkit: warning: {where}: no glomeruli or regions found; the recount is empty", err=True
        )
    click.echo(describe(summary))
    click.echo(f"wrote {Path(folder) / 'review' / 'summary.json'} and report.html")
    from glomkit.cohort import COHORT_CSV

    table = Path(folder).resolve().parent / COHORT_CSV
    if Path(folder).resolve().name == summary.get("stem") and _has_row(table, summary["stem"]):
        click.echo(f"updated {table} with the reviewed figures")


def _has_row(table: Path, stem: str) -> bool:
    import csv

    try:
        with open(table, newline="", encoding="utf-8") as fh:
            return any(r.get("stem") == stem for r in csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False

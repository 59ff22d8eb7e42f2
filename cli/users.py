"""``fraudstream users add|remove|list|set-role``: accounts of the review page (roles analyst, admin)."""

from __future__ import annotations

import sys

import click

from fraudstream.cli.review_common import load_settings, run_with_redis


def _store(redis):
    from fraudstream.review_queue.users import UserStore

    return UserStore(redis, load_settings())


@click.group("users")
def command() -> None:
    """Manage the review page's users (passwords are hashed with Argon2id and never shown again)."""


@command.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["analyst", "admin"]), default="analyst", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input "
              "(otherwise one is generated and printed once).")
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add a user NAME."""
    from fraudstream.review_queue.users import UserError, generate_password

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else generate_password()

    async def work(redis):
        await _store(redis).add(name, password, role, actor="cli")

    try:
        run_with_redis(load_settings(), work)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {role} {name}")
    if not password_stdin:
        click.echo(f"password (shown once): {password}")


@command.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove the user NAME."""
    from fraudstream.review_queue.users import UserError

    async def work(redis):
        await _store(redis).remove(name, actor="cli")

    try:
        run_with_redis(load_settings(), work)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {name}")


@command.command("list")
def list_users() -> None:
    """List users and roles."""
    import time

    async def work(redis):
        return await _store(redis).list()

    users = run_with_redis(load_settings(), work)
    for u in users:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(u.created_at))
        click.echo(f"{u.name}\t{u.role}\t{created} UTC")
    if not users:
        click.echo("no users (add one: fraudstream users add NAME --role admin)", err=True)


@command.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["analyst", "admin"]))
def set_role(name: str, role: str) -> None:
    """Give the user NAME the role ROLE."""
    from fraudstream.review_queue.users import UserError

    async def work(redis):
        await _store(redis).set_role(name, role, actor="cli")

    try:
        run_with_redis(load_settings(), work)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} is now {role}")


#: The analyst account ``fraudstream demo`` prints a login for.
DEMO_USER = "demo"


def demo_login(redis_url: str, redis_prefix: str) -> tuple[str, str]:
    """Create the demo analyst (or give it a new password): (name, generated password), to print once."""
    from fraudstream.review_queue.users import generate_password

    settings = load_settings(redis_url=redis_url, redis_prefix=redis_prefix)
    password = generate_password()

    async def work(redis):
        from fraudstream.review_queue.users import UserStore

        store = UserStore(redis, settings)
        if await store.get(DEMO_USER) is None:
            await store.add(DEMO_USER, password, "analyst", actor="demo")
        else:
            await store.set_password(DEMO_USER, password, actor="demo")

    run_with_redis(settings, work)
    return DEMO_USER, password

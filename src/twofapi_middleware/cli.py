"""The ``twofapi`` command: run a server, migrate storage, act as a client.

::

    twofapi dev [--host H] [--port P] [--accept-any-proof]
    twofapi serve [--storage URL] [--host H] [--port P] [--workers N]
    twofapi migrate --storage URL
    twofapi keygen [--output FILE]
    twofapi client enroll|login|get|rotate|recover [--server URL] [--credential F]
    twofapi admin revoke|suspend|reactivate CLIENT_ID [--server URL]

Admin commands read the admin secret from ``TWOFAPI_ADMIN_SECRET`` only: a
command-line flag would show it to every user of the machine. Expected
errors print one line to stderr and exit with status 1; usage errors exit
with 2.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .client import (
    AdminClient,
    ClientError,
    Credential,
    ProblemResponse,
    TwoFApiClient,
)
from .client._credential import sync_folder, write_private_file
from .constants import CLIENT_ID_PATTERN
from .errors import ConfigurationError, TwoFApiError

DEFAULT_SERVER: Final = "http://127.0.0.1:3000"
DEFAULT_CREDENTIAL_FILE: Final = "twofapi-credential.json"
ADMIN_SECRET_VARIABLE: Final = "TWOFAPI_ADMIN_SECRET"

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]


class _Abort(Exception):
    """An expected failure of a command, with the line to show for it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (TwoFApiError, _Abort, ValueError) as error:
        # ValueError: arguments the client library refuses (a full URL as
        # the path of `client get`, a credential for another client).
        return _fail(str(error))
    except FileExistsError as error:
        return _fail(f"{error.filename} already exists; refusing to overwrite it")
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"{where}{error.strerror or error}")
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``twofapi`` command."""
    parser = argparse.ArgumentParser(
        prog="twofapi", description="2FApi zero-knowledge proof authentication."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run a development server")
    _add_bind_options(dev)
    dev.add_argument(
        "--accept-any-proof",
        action="store_true",
        help="accept every proof (never outside local development)",
    )
    dev.set_defaults(handler=_dev)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--storage", metavar="URL", help="storage URL")
    _add_bind_options(serve)
    serve.add_argument("--workers", type=_positive_int, default=1, metavar="N")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the storage")
    migrate.add_argument("--storage", metavar="URL", required=True)
    migrate.set_defaults(handler=_migrate)

    keygen = commands.add_parser("keygen", help="make an Ed25519 signing key")
    keygen.add_argument(
        "--output", "-o", metavar="FILE", help="write it to a new 0600 file"
    )
    keygen.set_defaults(handler=_keygen)

    _add_client_commands(commands)
    _add_admin_commands(commands)
    return parser


def _add_bind_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=3000, help="0 picks a free one")


def _add_client_commands(commands: _Commands) -> None:
    client = commands.add_parser("client", help="act as a 2FApi client")
    actions = client.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        metavar="URL",
        type=_server,
        help=f"server URL (default: the credential's, else {DEFAULT_SERVER})",
    )
    common.add_argument(
        "--credential",
        metavar="FILE",
        type=Path,
        default=Path(DEFAULT_CREDENTIAL_FILE),
        help=f"credential file (default {DEFAULT_CREDENTIAL_FILE})",
    )
    first_factor = argparse.ArgumentParser(add_help=False)
    first_factor.add_argument(
        "--first-factor-env",
        metavar="VARIABLE",
        help="environment variable holding the first factor (an API key); "
        "random by default",
    )
    audience = argparse.ArgumentParser(add_help=False)
    audience.add_argument("--audience", help="token audience to ask for")

    enroll = actions.add_parser(
        "enroll", parents=[common, first_factor], help="enroll a new client"
    )
    enroll.add_argument("--client-id", type=_client_id, required=True)
    enroll.set_defaults(handler=_client_enroll)

    login = actions.add_parser("login", parents=[common, audience], help="log in")
    login.add_argument(
        "--print-token", action="store_true", help="print the access token itself"
    )
    login.set_defaults(handler=_client_login)

    get = actions.add_parser(
        "get", parents=[common, audience], help="GET a guarded route as JSON"
    )
    get.add_argument("path", metavar="PATH", help="path such as /v1/resources/x")
    get.set_defaults(handler=_client_get)

    rotate = actions.add_parser(
        "rotate", parents=[common], help="replace the commitment"
    )
    rotate.set_defaults(handler=_client_rotate)

    recover = actions.add_parser(
        "recover",
        parents=[common, first_factor],
        help="replace the commitment with the recovery words",
    )
    recover.add_argument(
        "--words", help="the recovery words (prefer standard input: argv is public)"
    )
    recover.add_argument(
        "--client-id", type=_client_id, help="needed when the credential is lost"
    )
    recover.set_defaults(handler=_client_recover)


def _add_admin_commands(commands: _Commands) -> None:
    admin = commands.add_parser(
        "admin", help=f"admin calls; the secret comes from {ADMIN_SECRET_VARIABLE}"
    )
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("client_id", metavar="CLIENT_ID", type=_client_id)
    common.add_argument("--server", metavar="URL", type=_server, default=DEFAULT_SERVER)

    revoke = actions.add_parser("revoke", parents=[common], help="revoke a client")
    revoke.set_defaults(handler=_admin_revoke)
    suspend = actions.add_parser("suspend", parents=[common], help="suspend one")
    suspend.set_defaults(handler=_admin_suspend)

    reactivate = actions.add_parser(
        "reactivate",
        parents=[common],
        help="reactivate a client with a new credential",
    )
    reactivate.add_argument(
        "--credential",
        metavar="FILE",
        type=Path,
        required=True,
        help="new credential file to create for the client",
    )
    reactivate.add_argument("--first-factor-env", metavar="VARIABLE")
    reactivate.set_defaults(handler=_admin_reactivate)


# -- server commands ---------------------------------------------------------


# The server is imported only by the commands that run it: it pulls in
# uvicorn and the web stack, which the client commands never need.


def _dev(args: argparse.Namespace) -> int:
    try:
        from .server import run_dev
    except ImportError as error:
        raise ConfigurationError(f"the server is not available: {error}") from None
    run_dev(host=args.host, port=args.port, accept_any_proof=args.accept_any_proof)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import run_serve
    except ImportError as error:
        raise ConfigurationError(f"the server is not available: {error}") from None
    run_serve(
        storage_url=args.storage,
        host=args.host,
        port=args.port,
        workers=args.workers,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .errors import SchemaError, SchemaTooNew
    from .storage import SCHEMA_VERSION, MemoryStorage, open_storage, redact_url

    storage = open_storage(args.storage)
    if isinstance(storage, MemoryStorage):
        storage.close()
        print(f"{redact_url(args.storage)} keeps no schema: nothing to migrate")
        return 0
    try:
        try:
            storage.check_schema()
            current = True
        except SchemaTooNew as error:
            # A newer release wrote this schema; migrating cannot help.
            raise _Abort(f"{error}; nothing was migrated") from None
        except SchemaError:
            current = False
        if not current:
            storage.migrate()
    finally:
        storage.close()

    where = redact_url(args.storage)
    if current:
        print(f"{where}: already at schema version {SCHEMA_VERSION}; nothing to do")
    else:
        print(f"{where}: migrated to schema version {SCHEMA_VERSION}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if args.output is None:
        sys.stdout.write(pem.decode("ascii"))
        return 0
    write_private_file(args.output, pem)
    print(f"Wrote a new Ed25519 signing key to {args.output} (mode 0600).")
    return 0


# -- client commands ---------------------------------------------------------


def _client_enroll(args: argparse.Namespace) -> int:
    path: Path = args.credential
    created = not path.exists()
    if created:
        server = args.server or DEFAULT_SERVER
        credential = Credential.generate(
            args.client_id, _first_factor(args), server_url=server
        )
        credential.save(path)
    else:
        # A retry after a lost answer: the server answers the same commitment
        # with the same enrollment, so the existing file is reused.
        credential = Credential.load(path)
        if credential.client_id != args.client_id:
            raise _Abort(
                f"{path} holds the credential of {credential.client_id!r}; "
                "choose another --credential"
            )
        server = _server_url(args, credential)

    try:
        with TwoFApiClient(server, credential) as client:
            result = client.enroll()
    except ProblemResponse:
        if created:
            path.unlink(missing_ok=True)
        raise
    except ClientError as error:
        raise _Abort(f"{error}; {path} is kept: run enroll again to retry") from None

    print(f"Enrolled {credential.client_id} (reference {result.reference_id}).")
    print(f"Credential saved to {path}; keep it private.")
    if result.recovery_words is None:
        print("This credential was already enrolled; its recovery words were")
        print("shown at the first enrollment and cannot be shown again.")
    else:
        print("Recovery words, shown only this once; write them down offline:")
        print("  " + " ".join(result.recovery_words))
    return 0


def _client_login(args: argparse.Namespace) -> int:
    credential = Credential.load(args.credential)
    server = _server_url(args, credential)
    with TwoFApiClient(server, credential) as client:
        token = client.login(args.audience)

    summary = (
        f"Logged in as {credential.client_id} at {server}: {token.token_type} "
        f"token for audience {token.audience or '(server default)'}, expires "
        f"{token.expires_at.isoformat()} (in {token.expires_in} s)."
    )
    if args.print_token:
        print(summary, file=sys.stderr)
        print(token.token)
    else:
        print(summary)
    return 0


def _client_get(args: argparse.Namespace) -> int:
    credential = Credential.load(args.credential)
    with TwoFApiClient(
        _server_url(args, credential), credential, audience=args.audience
    ) as client:
        data = client.get(args.path)
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def _client_rotate(args: argparse.Namespace) -> int:
    path: Path = args.credential
    credential = Credential.load(path)
    new_credential = credential.successor()
    with (
        _staged(new_credential, path),
        TwoFApiClient(_server_url(args, credential), credential) as client,
    ):
        rotated_at = client.rotate(new_credential)

    print(f"Rotated {credential.client_id} at {rotated_at.isoformat()}.")
    print(f"{path} now holds the new credential.")
    return 0


def _client_recover(args: argparse.Namespace) -> int:
    path: Path = args.credential
    if path.exists():
        current = Credential.load(path)
        if args.client_id is not None and args.client_id != current.client_id:
            raise _Abort(f"{path} holds the credential of {current.client_id!r}")
        new_credential = current.successor()
    elif args.client_id is None:
        raise _Abort(f"{path} does not exist; name the client with --client-id")
    else:
        new_credential = Credential.generate(
            args.client_id, _first_factor(args), server_url=args.server
        )
    words = args.words if args.words is not None else _read_words()

    server = _server_url(args, new_credential)
    with (
        _staged(new_credential, path),
        TwoFApiClient(server, new_credential) as client,
    ):
        result = client.recover(words, new_credential)

    print(f"Recovered {result.client_id}; {path} holds the new credential.")
    print("New recovery words, shown only this once (the old ones are void):")
    print("  " + " ".join(result.recovery_words))
    return 0


# -- admin commands ----------------------------------------------------------


def _admin_revoke(args: argparse.Namespace) -> int:
    with AdminClient(args.server, _admin_secret()) as admin:
        admin.revoke(args.client_id)
    # 204 also answers an unknown or already revoked identifier (protocol).
    print(f"Revoked {args.client_id} (if it existed and was not revoked already).")
    return 0


def _admin_suspend(args: argparse.Namespace) -> int:
    with AdminClient(args.server, _admin_secret()) as admin:
        admin.suspend(args.client_id)
    print(f"Suspended {args.client_id} (if it existed and was active).")
    return 0


def _admin_reactivate(args: argparse.Namespace) -> int:
    path: Path = args.credential
    secret = _admin_secret()
    if path.exists():
        raise _Abort(f"{path} already exists; name a new credential file")
    new_credential = Credential.generate(
        args.client_id, _first_factor(args), server_url=args.server
    )
    with _staged(new_credential, path), AdminClient(args.server, secret) as admin:
        result = admin.reactivate(args.client_id, new_credential)

    print(f"Reactivated {result.client_id}; its new credential is in {path}.")
    print("Recovery words, shown only this once; hand them over with the file:")
    print("  " + " ".join(result.recovery_words))
    return 0


# -- helpers -----------------------------------------------------------------


@contextlib.contextmanager
def _staged(credential: Credential, path: Path) -> Iterator[Path]:
    """Keep ``credential`` beside ``path`` until the server has taken it.

    The new secrets are on disk before the server hears of them, and move
    over ``path`` only once it has accepted them: a crash or a lost answer
    in between leaves them in the pending file, never lost.
    """
    pending = path.with_name(path.name + ".pending")
    try:
        credential.save(pending)
    except FileExistsError:
        raise _Abort(
            f"{pending} exists: an earlier rotation or recovery may have "
            "been interrupted. Find out which credential the server accepts "
            "(try logging in with each) before removing it."
        ) from None

    try:
        yield pending
    except ProblemResponse as error:
        if error.status < 500:
            # Refused for sure: the server still holds the old commitment.
            pending.unlink(missing_ok=True)
            raise
        raise _Abort(f"{error}; outcome unknown, {_kept(pending)}") from None
    except ValueError:
        pending.unlink(missing_ok=True)
        raise
    except ClientError as error:
        raise _Abort(f"{error}; outcome unknown, {_kept(pending)}") from None

    os.replace(pending, path)
    sync_folder(path.parent)


def _kept(pending: Path) -> str:
    return f"the new credential is kept in {pending}"


def _server_url(args: argparse.Namespace, credential: Credential) -> str:
    server: str | None = args.server or credential.server_url
    return server or DEFAULT_SERVER


def _first_factor(args: argparse.Namespace) -> bytes | None:
    variable: str | None = args.first_factor_env
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise _Abort(f"environment variable {variable} is not set")
    return value.encode("utf-8")


def _admin_secret() -> str:
    secret = os.environ.get(ADMIN_SECRET_VARIABLE)
    if not secret:
        raise ConfigurationError(
            f"set {ADMIN_SECRET_VARIABLE} to the server's admin secret"
        )
    return secret


def _read_words() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Recovery words: ")
    return sys.stdin.read()


def _client_id(text: str) -> str:
    if not CLIENT_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError("must be 1 to 128 of [A-Za-z0-9._-]")
    return text


def _server(text: str) -> str:
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError("must be an http:// or https:// URL")
    return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0 to 65535")
    return value


def _fail(message: str) -> int:
    line = " ".join(message.split())
    print(f"twofapi: error: {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""The Alembic environment of the SQL storage schema.

Migrations run only through :meth:`SQLStorage.migrate
<twofapi_middleware.storage.sql.SQLStorage.migrate>` (``twofapi migrate``),
which hands over a live connection and the version table's name in
``config.attributes``. There is no ``alembic.ini`` and no offline mode: the
package owns its tables and upgrades them itself.
"""

from __future__ import annotations

from alembic import context


def run_migrations() -> None:
    """Upgrade or downgrade on the connection the caller opened."""
    attributes = context.config.attributes
    connection = attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the twofapi migrations run through `twofapi migrate`, "
            "not the alembic command"
        )

    context.configure(
        connection=connection,
        version_table=attributes["version_table"],
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()

"""Alembic's environment for the event store: the connection comes from ``blip_events.store.migrate`` (or a URL on
the command line), the target metadata from ``blip_events.schema``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from blip_events.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic -x url=... upgrade head` by hand
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()

"""From frames to alerts: per-camera change gate, behaviour events, a durable store and signed webhooks.

Pure where it can be (``gate``, ``machine``, ``notify`` take values and return values), so that each rule is tested
without a server; ``store`` is the one module that talks SQL (SQLAlchemy 2, Alembic migrations, SQLite embedded or
PostgreSQL shared), ``service`` runs one camera frame through them, and ``worker`` delivers the outbox. The API
tier's routes (``blip_api.cameras``) call ``service``; nothing here imports FastAPI, the router or the model stack.
"""

"""The state store's queries, one module per concern, shared by the SQLite and Postgres stores
(see :mod:`.base`)."""

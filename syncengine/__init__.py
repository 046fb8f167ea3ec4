"""syncengine: change-data capture and data sync between PostgreSQL, MongoDB and Parquet."""

__version__ = "0.1.0"

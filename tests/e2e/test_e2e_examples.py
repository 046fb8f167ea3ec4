"""Every config in examples/ runs end to end through the real CLI against the fixture servers."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(tmp_path: Path, name: str, env: dict[str, str]) -> CLI:
    return CLI(tmp_path, (EXAMPLES / name).read_text(), env)


def test_postgres_to_postgres(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE customers (id int PRIMARY KEY, name text)",
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric(12,2), note text)",
        "INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 50) i",
        "INSERT INTO orders SELECT i, i % 50 + 1, i * 1.5, repeat('n', 3000) "
        "FROM generate_series(1, 500) i",
    )
    cli = example(
        tmp_path, "postgres-to-postgres.yaml", {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    )
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE orders SET total = total + 1 WHERE id < 10",  # note: unchanged TOAST
        "DELETE FROM customers WHERE id = 3",
    )
    cli.run("sync", "--once")
    query = "SELECT id, customer, total, md5(note) FROM orders ORDER BY id"
    assert rows(pg_dsn, query) == rows(pg_target_dsn, query)
    assert rows(pg_target_dsn, "SELECT count(*) FROM customers") == [(49,)]
    assert rows(
        pg_target_dsn,
        "SELECT data_type, numeric_precision FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'total'",
    ) == [("numeric", 12)]
    cli.run("verify")


def test_postgres_to_mongo(tmp_path, pg_dsn, mongo_uri, mongo_db):
    execute(
        pg_dsn,
        "CREATE TABLE orders (id bigint PRIMARY KEY, email text, amount_cents int, status text)",
        "INSERT INTO orders SELECT i, 'User' || i || '@X.com', i * 100, "
        "CASE WHEN i % 5 = 0 THEN 'draft' ELSE 'paid' END FROM generate_series(1, 200) i",
    )
    config = (
        (EXAMPLES / "postgres-to-mongo.yaml")
        .read_text()
        .replace("database: shop", f"database: {mongo_db}")
    )
    cli = CLI(tmp_path, config, {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri})
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE orders SET status = 'draft' WHERE id = 1",
        "UPDATE orders SET status = 'paid' WHERE id = 5",
    )
    cli.run("sync", "--once")
    with MongoClient(mongo_uri) as client:
        orders = client[mongo_db]["orders"]
        assert orders.count_documents({}) == 160
        assert orders.find_one({"_id": 1}) is None  # became a draft: left the mirrored subset
        doc = orders.find_one({"_id": 5})
        assert doc["customer"] == {"email": "user5@x.com"} and doc["total"] == 5.0
    cli.run("verify")


def test_mongo_to_postgres_flattened(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    config = (
        (EXAMPLES / "mongo-to-postgres.yaml")
        .read_text()
        .replace("database: app", f"database: {mongo_db}")
    )
    with MongoClient(mongo_uri) as client:
        users = client[mongo_db]["users"]
        users.insert_many(
            [
                {
                    "_id": i,
                    "name": f"u{i}",
                    "address": {"city": "Oslo", "zip": str(i)},
                    "tags": ["a", str(i)],
                }
                for i in range(100)
            ]
        )
        cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "TGT_DSN": pg_target_dsn})
        cli.run("sync", "--once")
        users.update_one({"_id": 1}, {"$set": {"address.city": "Bergen"}})
        users.delete_one({"_id": 2})
        users.insert_one(
            {"_id": 500, "name": "late", "address": {"city": "Tromsø", "zip": "9"}, "tags": []}
        )
        cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT count(*) FROM users") == [(100,)]
    assert rows(pg_target_dsn, 'SELECT address_city, address_zip FROM users WHERE "_id" = 1') == [
        ("Bergen", "1")
    ]
    assert rows(pg_target_dsn, 'SELECT address_city FROM users WHERE "_id" = 500') == [("Tromsø",)]


def test_postgres_to_parquet(tmp_path, pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, status text)",
        "INSERT INTO orders SELECT i, 'new' FROM generate_series(1, 100) i",
    )
    out = tmp_path / "lake"
    cli = example(
        tmp_path, "postgres-to-parquet.yaml", {"SRC_DSN": pg_dsn, "PARQUET_PATH": str(out)}
    )
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE orders SET status = 'paid' WHERE id <= 10",
        "DELETE FROM orders WHERE id = 100",
    )
    cli.run("sync", "--once")
    log = ds.dataset(out, format="parquet", partitioning="hive").to_table().to_pylist()
    ops = sorted(r["_op"] for r in log)
    assert ops.count("r") == 100 and ops.count("u") == 10 and ops.count("d") == 1

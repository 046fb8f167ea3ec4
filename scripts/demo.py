"""Demo: Postgres → MongoDB and Postgres → Postgres with the real ``syncengine`` CLI.

Starts a throwaway PostgreSQL cluster and the SecantusDB MongoDB-compatible server (the same
ones the tests use), seeds ``public.orders``, runs ``syncengine sync --once`` (which backfills
first), makes inserts/updates/deletes, syncs again and prints what arrived.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from tests.servers import running_mongo, running_postgres  # noqa: E402

CONFIG = """
state: {state}
pipelines:
  orders_to_mongo:
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.orders]}}
    target: {{type: mongo, uri: "${{MONGO_URI}}", database: shop}}
    mappings:
      - source: public.orders
        target: orders
        fields:
          _id: id
          customer.email: lower(email)
          total: amount_cents / 100.0
          status: status
        filter: status <> 'draft'
  orders_to_pg:
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.orders]}}
    target: {{type: postgres, dsn: "${{TGT_DSN}}", schema: public}}
"""


def cli(*args: str, env: dict[str, str]) -> None:
    exe = str(Path(sys.executable).parent / "syncengine")
    print(f"$ syncengine {' '.join(args)}", flush=True)
    subprocess.run([exe, *args], check=True, env=env)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="syncengine-demo-"))
    with running_postgres() as pg, running_mongo() as mongo:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute("CREATE DATABASE warehouse")
        src, tgt = pg.dsn("shop"), pg.dsn("warehouse")
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (id bigint PRIMARY KEY, email text, amount_cents int, "
                "status text, updated_at timestamptz DEFAULT now())"
            )
            conn.execute(
                "INSERT INTO orders (id, email, amount_cents, status) SELECT i, "
                "'Customer' || i || '@Example.com', i * 100, "
                "CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'paid' END FROM generate_series(1, 1000) i"
            )
        config = work / "demo.yaml"
        config.write_text(CONFIG.format(state=work / "state.db"))
        env = {**os.environ, "SRC_DSN": src, "TGT_DSN": tgt, "MONGO_URI": mongo.uri}
        cli("validate", str(config), env=env)
        cli("sync", str(config), "--once", env=env)
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO orders (id, email, amount_cents, status) "
                "VALUES (1001, 'New@Example.com', 4200, 'paid')"
            )
            conn.execute("UPDATE orders SET status = 'shipped' WHERE id <= 5")
            conn.execute("UPDATE orders SET status = 'paid' WHERE id = 10")  # draft → mirrored
            conn.execute("DELETE FROM orders WHERE id = 2")
        cli("sync", str(config), "--once", env=env)
        cli("verify", str(config), env=env)

        with MongoClient(mongo.uri) as client:
            orders = client.shop.orders
            print(
                f"\nMongo shop.orders: {orders.count_documents({})} documents "
                "(1000 seeded - 100 drafts + 1 insert + 1 draft now paid - 1 delete)"
            )
            for doc in orders.find({"_id": {"$in": [1, 3, 10, 1001]}}).sort("_id", 1):
                print("  ", doc)
        with psycopg.connect(tgt) as conn:
            count = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
            shipped = conn.execute("SELECT count(*) FROM orders WHERE status='shipped'").fetchone()[
                0
            ]
            print(f"Postgres warehouse.orders: {count} rows, {shipped} shipped")


if __name__ == "__main__":
    main()

//! Every operation through its whole life: start; writes through the old version (the raw
//! tables) and the new version (its views), checking what `up` and `down` produce; rollback,
//! after which the schema equals the one before start; start again; complete; the final
//! schema and data checked.

mod common;

use common::*;

struct Case {
    name: &'static str,
    setup: &'static str,
    migration: &'static str,
    /// Statements of old-version clients while the migration is open.
    old_writes: &'static [&'static str],
    /// Statements of new-version clients (search_path = the version schema).
    new_writes: &'static [&'static str],
    /// Statements the new version must refuse while the migration is open.
    new_refused: &'static [&'static str],
    /// (query on the raw tables returning text, expected) while open.
    open: &'static [(&'static str, &'static str)],
    /// (query on the new version returning text, expected) while open.
    open_new: &'static [(&'static str, &'static str)],
    /// (query on the raw tables returning text, expected) after complete.
    done: &'static [(&'static str, &'static str)],
}

/// The text `sql` returns, "NULL" for NULL.
async fn text(c: &tokio_postgres::Client, sql: &str) -> String {
    common::scalar_text(c, sql)
        .await
        .unwrap_or_else(|| "NULL".to_owned())
}

async fn run_case(case: &Case) {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(case.setup)
        .await
        .unwrap_or_else(|e| panic!("{}: setup: {e:?}", case.name));
    let file_name = format!("0001_{}.yaml", case.name);
    let m = Migrations::new(&[(&file_name, case.migration)]);
    let file = m.path().join(&file_name);
    let file = file.to_str().unwrap();
    let version = format!("public_0001_{}", case.name);
    let before = schema_dump(&db).await;

    for round in 0..2 {
        run_ok(&db, &m.path(), &["start", file]).await;
        if round == 1 {
            break;
        }
        let new = db.client().await;
        new.batch_execute(&format!(
            "SET search_path = {}",
            pgshift::quote::ident(&version)
        ))
        .await
        .unwrap();
        for sql in case.old_writes {
            raw.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{}: old version: {sql}: {e:?}", case.name));
        }
        for sql in case.new_writes {
            new.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{}: new version: {sql}: {e:?}", case.name));
        }
        for sql in case.new_refused {
            assert!(
                new.batch_execute(sql).await.is_err(),
                "{}: the new version accepted {sql}",
                case.name
            );
        }
        for (sql, expected) in case.open {
            assert_eq!(
                text(&raw, sql).await,
                *expected,
                "{}: while open: {sql}",
                case.name
            );
        }
        for (sql, expected) in case.open_new {
            assert_eq!(
                text(&new, sql).await,
                *expected,
                "{}: new version while open: {sql}",
                case.name
            );
        }
        run_ok(&db, &m.path(), &["rollback"]).await;
        let after = schema_dump(&db).await;
        assert!(
            before == after,
            "{}: rollback left the schema changed:\nbefore:\n{before}\nafter:\n{after}",
            case.name
        );
    }
    run_ok(&db, &m.path(), &["complete"]).await;
    for (sql, expected) in case.done {
        assert_eq!(
            text(&raw, sql).await,
            *expected,
            "{}: after complete: {sql}",
            case.name
        );
    }
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_pgshift\\_%'"
        )
        .await,
        0,
        "{}: triggers left behind",
        case.name
    );
}

const CASES: &[Case] = &[
    Case {
        name: "alter_primary_key_identity",
        setup: "CREATE TABLE accounts (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
                CREATE TABLE logins (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES accounts (id));
                INSERT INTO accounts (name) VALUES ('a'), ('b');
                INSERT INTO logins (account_id) VALUES (1), (2);",
        migration: "operations:\n  - alter_primary_key:\n      table: accounts\n      type: bigint\n",
        old_writes: &[
            "INSERT INTO accounts (name) VALUES ('old')",
            "INSERT INTO logins (account_id) SELECT id FROM accounts WHERE name = 'old'",
        ],
        new_writes: &[
            "INSERT INTO accounts (name) VALUES ('new')",
            "INSERT INTO logins (account_id) SELECT id FROM accounts WHERE name = 'new'",
        ],
        new_refused: &["INSERT INTO logins (account_id) VALUES (999999)"],
        open: &[("SELECT string_agg(a.name, ',' ORDER BY a.id) FROM accounts a JOIN logins l ON l.account_id = a.id", "a,b,old,new")],
        open_new: &[("SELECT string_agg(a.name || ':' || pg_typeof(a.id), ',' ORDER BY a.id) FROM accounts a JOIN logins l ON l.account_id = a.id", "a:bigint,b:bigint,old:bigint,new:bigint")],
        done: &[
            ("SELECT string_agg(a.name, ',' ORDER BY a.id) FROM accounts a JOIN logins l ON l.account_id = a.id", "a,b,old,new"),
            ("SELECT attidentity::text || ':' || format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'id'", "a:bigint"),
            ("SELECT pg_get_serial_sequence('accounts', 'id')", "public.accounts_id_seq"),
            ("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'logins'::regclass AND attname = 'account_id'", "bigint"),
            ("WITH i AS (INSERT INTO accounts (name) VALUES ('after') RETURNING id) SELECT (i.id > (SELECT max(id) FROM accounts))::text FROM i", "true"),
        ],
    },
    Case {
        name: "alter_primary_key_by_copy",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, parent_id int REFERENCES orders (id), price int NOT NULL);
                CREATE TABLE order_items (id bigserial PRIMARY KEY, order_id int NOT NULL REFERENCES orders (id) ON DELETE CASCADE, qty int NOT NULL);
                CREATE INDEX order_items_order_id ON order_items (order_id);
                INSERT INTO orders (price) VALUES (10), (20);
                UPDATE orders SET parent_id = 1 WHERE id = 2;
                INSERT INTO order_items (order_id, qty) VALUES (1, 1), (2, 2);",
        migration: "operations:\n  - alter_primary_key:\n      table: orders\n      type: bigint\n",
        old_writes: &[
            "INSERT INTO orders (price, parent_id) VALUES (30, 1)",
            "INSERT INTO order_items (order_id, qty) VALUES (3, 3)",
            "DELETE FROM orders WHERE id = 2",
        ],
        new_writes: &[
            "INSERT INTO orders (price, parent_id) VALUES (40, 3)",
            "INSERT INTO order_items (order_id, qty) SELECT id, 4 FROM orders WHERE price = 40",
        ],
        new_refused: &["INSERT INTO order_items (order_id, qty) VALUES (999999, 1)"],
        open: &[("SELECT string_agg(o.id || ':' || coalesce(o.parent_id::text, '-') || ':' || i.qty, ',' ORDER BY o.id) FROM orders o JOIN order_items i ON i.order_id = o.id", "1:-:1,3:1:3,4:3:4")],
        open_new: &[("SELECT string_agg(o.id || ':' || pg_typeof(o.id) || ':' || pg_typeof(i.order_id), ',' ORDER BY o.id) FROM orders o JOIN order_items i ON i.order_id = o.id", "1:bigint:bigint,3:bigint:bigint,4:bigint:bigint")],
        done: &[
            // The new version's writes went to the table too: the rollback kept them.
            ("SELECT string_agg(o.id || ':' || coalesce(o.parent_id::text, '-') || ':' || i.qty, ',' ORDER BY o.id) FROM orders o JOIN order_items i ON i.order_id = o.id", "1:-:1,3:1:3,4:3:4"),
            ("SELECT string_agg(attrelid::regclass || '.' || attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attrelid::regclass::text, attname) FROM pg_attribute WHERE attrelid IN ('orders'::regclass, 'order_items'::regclass) AND attname IN ('id', 'parent_id', 'order_id')", "order_items.id:bigint,order_items.order_id:bigint,orders.id:bigint,orders.parent_id:bigint"),
            ("SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('orders'::regclass, 'order_items'::regclass)", "order_items_order_id_fkey:true,orders_parent_id_fkey:true"),
            ("SELECT pg_get_serial_sequence('orders', 'id') || ':' || format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'orders_id_seq'::regclass", "public.orders_id_seq:bigint"),
            ("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename IN ('orders', 'order_items')", "order_items_order_id,order_items_pkey,orders_pkey"),
            // The cascade of the foreign key made again by the swap.
            ("WITH d AS (DELETE FROM orders WHERE id = 4) SELECT 'deleted'", "deleted"),
            ("SELECT count(*)::text FROM order_items WHERE order_id = 4", "0"),
            // The old tables, renamed by the swap and dropped after it, are gone.
            ("SELECT count(*)::text FROM pg_class WHERE relname LIKE '\\_pgshift\\_%'", "0"),
        ],
    },
    Case {
        name: "alter_primary_key_in_place",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, parent_id int REFERENCES orders (id), price int NOT NULL);
                CREATE TABLE order_items (id bigserial PRIMARY KEY, order_id int NOT NULL REFERENCES orders (id) ON DELETE CASCADE, qty int NOT NULL);
                INSERT INTO orders (price) VALUES (10), (20);
                UPDATE orders SET parent_id = 1 WHERE id = 2;
                INSERT INTO order_items (order_id, qty) VALUES (1, 1), (2, 2);",
        migration: "operations:\n  - alter_primary_key:\n      table: orders\n      type: bigint\n      method: in_place\n",
        old_writes: &[
            "INSERT INTO orders (price, parent_id) VALUES (30, 1)",
            "INSERT INTO order_items (order_id, qty) VALUES (3, 3)",
        ],
        new_writes: &[
            "INSERT INTO orders (price, parent_id) VALUES (40, 3)",
            "INSERT INTO order_items (order_id, qty) SELECT id, 4 FROM orders WHERE price = 40",
        ],
        new_refused: &["INSERT INTO order_items (order_id, qty) VALUES (999999, 1)"],
        open: &[("SELECT string_agg(o.price || ':' || coalesce(p.price::text, '-') || ':' || i.qty, ',' ORDER BY o.price) FROM orders o LEFT JOIN orders p ON p.id = o.parent_id JOIN order_items i ON i.order_id = o.id", "10:-:1,20:10:2,30:10:3,40:30:4")],
        open_new: &[("SELECT string_agg(o.price || ':' || pg_typeof(o.id) || ':' || pg_typeof(i.order_id), ',' ORDER BY o.price) FROM orders o JOIN order_items i ON i.order_id = o.id", "10:bigint:bigint,20:bigint:bigint,30:bigint:bigint,40:bigint:bigint")],
        done: &[
            ("SELECT string_agg(o.price || ':' || coalesce(p.price::text, '-') || ':' || i.qty, ',' ORDER BY o.price) FROM orders o LEFT JOIN orders p ON p.id = o.parent_id JOIN order_items i ON i.order_id = o.id", "10:-:1,20:10:2,30:10:3,40:30:4"),
            ("SELECT string_agg(attrelid::regclass || '.' || attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attrelid::regclass::text, attname) FROM pg_attribute WHERE attrelid IN ('orders'::regclass, 'order_items'::regclass) AND attname IN ('id', 'parent_id', 'order_id')", "order_items.id:bigint,order_items.order_id:bigint,orders.id:bigint,orders.parent_id:bigint"),
            ("SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('orders'::regclass, 'order_items'::regclass)", "order_items_order_id_fkey:true,orders_parent_id_fkey:true"),
        ],
    },
    Case {
        name: "add_column_method_copy",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL);
                CREATE INDEX orders_price ON orders (price);
                INSERT INTO orders (price) SELECT g FROM generate_series(1, 3) g;",
        migration: "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      method: copy\n      column:\n        name: price_cents\n        type: bigint\n        comment: in cents\n",
        old_writes: &["INSERT INTO orders (price) VALUES (4)", "UPDATE orders SET price = 20 WHERE id = 2"],
        new_writes: &[
            "INSERT INTO orders (price, price_cents) VALUES (5, 555)",
            "UPDATE orders SET price = 30 WHERE id = 3",
            "DELETE FROM orders WHERE id = 1",
        ],
        // NOT NULL (pgroll's default) holds on the copy for the new version.
        new_refused: &["INSERT INTO orders (price, price_cents) VALUES (6, NULL)"],
        open: &[("SELECT string_agg(id || ':' || price, ',' ORDER BY id) FROM orders", "2:20,3:30,4:4,5:5")],
        open_new: &[("SELECT string_agg(id || ':' || price || ':' || price_cents, ',' ORDER BY id) FROM orders", "2:20:2000,3:30:300,4:4:400,5:5:555")],
        done: &[
            // Rolled back and started again: the copy is made afresh from the table, whose
            // rows get `up` (the new version's own price_cents went with the rollback).
            ("SELECT string_agg(id || ':' || price || ':' || price_cents, ',' ORDER BY id) FROM orders", "2:20:2000,3:30:3000,4:4:400,5:5:500"),
            ("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders'", "orders_pkey,orders_price"),
            ("SELECT col_description('orders'::regclass, 3) || ':' || attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price_cents'", "in cents:true"),
        ],
    },
    Case {
        name: "alter_column_method_copy",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL CHECK (price >= 0), note text UNIQUE);
                CREATE INDEX orders_price ON orders (price);
                INSERT INTO orders (price, note) SELECT g, 'n' || g FROM generate_series(1, 3) g;",
        migration: "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint * 10\n      down: (price / 10)::int\n      method: copy\n",
        old_writes: &[
            "INSERT INTO orders (price, note) VALUES (4, 'n4')",
            "UPDATE orders SET price = 20 WHERE id = 2",
        ],
        new_writes: &[
            "INSERT INTO orders (price, note) VALUES (50, 'n5')",
            "UPDATE orders SET price = 30 WHERE id = 3",
            "DELETE FROM orders WHERE id = 1",
        ],
        // The copy's unique index and CHECK hold for the new version.
        new_refused: &["INSERT INTO orders (price, note) VALUES (60, 'n4')", "UPDATE orders SET price = -10 WHERE id = 2"],
        open: &[("SELECT string_agg(id || ':' || price, ',' ORDER BY id) FROM orders", "2:20,3:3,4:4,5:5")],
        open_new: &[("SELECT string_agg(id || ':' || price || ':' || pg_typeof(price), ',' ORDER BY id) FROM orders", "2:200:bigint,3:30:bigint,4:40:bigint,5:50:bigint")],
        done: &[
            ("SELECT string_agg(id || ':' || price || ':' || pg_typeof(price), ',' ORDER BY id) FROM orders", "2:200:bigint,3:30:bigint,4:40:bigint,5:50:bigint"),
            ("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders'", "orders_note_key,orders_pkey,orders_price"),
            ("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype <> 'n'", "orders_note_key,orders_pkey,orders_price_check"),
            ("SELECT (pg_get_serial_sequence('orders', 'id') = 'public.orders_id_seq')::text", "true"),
            ("SELECT coalesce(string_agg(relname, ','), 'none') FROM pg_class WHERE relname LIKE '\\_pgshift\\_%'", "none"),
        ],
    },
    Case {
        name: "extract",
        setup: "CREATE TABLE caterers (id serial PRIMARY KEY, name text NOT NULL, street text, zip text CHECK (length(zip) >= 5));
                CREATE INDEX caterers_zip ON caterers (zip);
                INSERT INTO caterers (name, street, zip) VALUES ('a', '1 Main', '02139'), ('b', NULL, NULL);",
        migration: "operations:\n  - extract:\n      table: caterers\n      columns: [street, zip]\n      into: addresses\n      reference_column: caterer_id\n",
        old_writes: &[
            "INSERT INTO caterers (name, street, zip) VALUES ('c', '3 Old', '10001')",
            "UPDATE caterers SET street = '1 Changed' WHERE id = 1",
        ],
        new_writes: &[
            "WITH c AS (INSERT INTO caterers (name) VALUES ('d') RETURNING id) INSERT INTO addresses (caterer_id, street, zip) SELECT id, '4 New', '94105' FROM c",
            "UPDATE addresses SET zip = '99999' WHERE caterer_id = 2",
            "DELETE FROM caterers WHERE id = 3",
        ],
        // The column is gone from the new version's caterers; the CHECK went with it.
        new_refused: &["SELECT street FROM caterers", "UPDATE addresses SET zip = '1' WHERE caterer_id = 1"],
        open: &[("SELECT string_agg(id || ':' || coalesce(street, '-') || ':' || coalesce(zip, '-'), ',' ORDER BY id) FROM caterers", "1:1 Changed:02139,2:-:99999,4:4 New:94105")],
        open_new: &[("SELECT string_agg(caterer_id || ':' || coalesce(street, '-') || ':' || coalesce(zip, '-'), ',' ORDER BY caterer_id) FROM addresses", "1:1 Changed:02139,2:-:99999,4:4 New:94105")],
        done: &[
            ("SELECT string_agg(caterer_id || ':' || coalesce(street, '-') || ':' || coalesce(zip, '-'), ',' ORDER BY caterer_id) FROM addresses", "1:1 Changed:02139,2:-:99999,4:4 New:94105"),
            ("SELECT count(*)::text FROM pg_attribute WHERE attrelid = 'caterers'::regclass AND attname IN ('street', 'zip') AND NOT attisdropped", "0"),
            ("SELECT tablename::text FROM pg_indexes WHERE indexname = 'caterers_zip'", "addresses"),
            ("SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'addresses'::regclass AND contype <> 'n'", "addresses_caterer_id_fkey:true,addresses_pkey:true,caterers_zip_check:true"),
        ],
    },
    Case {
        name: "create_table",
        setup: "SELECT 1",
        migration: "operations:\n  - create_table:\n      name: notes\n      columns:\n        - name: id\n          type: bigserial\n          pk: true\n        - name: body\n          type: text\n          default: \"'empty'\"\n",
        old_writes: &[],
        new_writes: &["INSERT INTO notes DEFAULT VALUES"],
        new_refused: &[],
        open: &[("SELECT body FROM notes", "empty")],
        open_new: &[("SELECT count(*)::text FROM notes", "1")],
        // Rollback dropped the table and the row written while it was open.
        done: &[("SELECT count(*)::text FROM notes", "0")],
    },
    Case {
        name: "drop_table",
        setup: "CREATE TABLE gone (id int PRIMARY KEY); INSERT INTO gone VALUES (1);",
        migration: "operations:\n  - drop_table:\n      name: gone\n",
        old_writes: &["INSERT INTO gone VALUES (2)"],
        new_writes: &[],
        new_refused: &["SELECT * FROM gone"],
        open: &[("SELECT count(*)::text FROM gone", "2")],
        open_new: &[],
        done: &[("SELECT (to_regclass('gone') IS NULL)::text", "true")],
    },
    Case {
        name: "rename_table",
        setup: "CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers VALUES (1, 'a');",
        migration: "operations:\n  - rename_table:\n      from: customers\n      to: clients\n",
        old_writes: &["INSERT INTO customers VALUES (2, 'old')"],
        new_writes: &["INSERT INTO clients VALUES (3, 'new')"],
        new_refused: &["SELECT * FROM customers"],
        open: &[("SELECT string_agg(name, ',' ORDER BY id) FROM customers", "a,old,new")],
        open_new: &[("SELECT count(*)::text FROM clients", "3")],
        done: &[("SELECT string_agg(name, ',' ORDER BY id) FROM clients", "a,old,new")],
    },
    Case {
        name: "drop_column",
        setup: "CREATE TABLE t (id int PRIMARY KEY, keep text, legacy text NOT NULL); INSERT INTO t VALUES (1, 'k', 'l');",
        migration: "operations:\n  - drop_column:\n      table: t\n      column: legacy\n      down: upper(keep)\n",
        old_writes: &["INSERT INTO t VALUES (2, 'k2', 'from old')"],
        new_writes: &["INSERT INTO t (id, keep) VALUES (3, 'k3')"],
        new_refused: &["SELECT legacy FROM t"],
        open: &[("SELECT string_agg(legacy, ',' ORDER BY id) FROM t", "l,from old,K3")],
        open_new: &[],
        done: &[("SELECT count(*)::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'legacy' AND NOT attisdropped", "0")],
    },
    Case {
        name: "rename_column",
        setup: "CREATE TABLE t (id int PRIMARY KEY, role text); INSERT INTO t VALUES (1, 'dev');",
        migration: "operations:\n  - rename_column:\n      table: t\n      from: role\n      to: job_title\n",
        old_writes: &["INSERT INTO t (id, role) VALUES (2, 'ops')"],
        new_writes: &["INSERT INTO t (id, job_title) VALUES (3, 'qa')"],
        new_refused: &["SELECT role FROM t"],
        open: &[("SELECT string_agg(role, ',' ORDER BY id) FROM t", "dev,ops,qa")],
        open_new: &[("SELECT string_agg(job_title, ',' ORDER BY id) FROM t", "dev,ops,qa")],
        done: &[("SELECT string_agg(job_title, ',' ORDER BY id) FROM t", "dev,ops,qa")],
    },
    Case {
        name: "alter_column_nullable",
        setup: "CREATE TABLE reviews (id int PRIMARY KEY, product text NOT NULL, review text); INSERT INTO reviews VALUES (1, 'p1', NULL), (2, 'p2', 'fine');",
        migration: "operations:\n  - alter_column:\n      table: reviews\n      column: review\n      nullable: false\n      up: SELECT CASE WHEN review IS NULL THEN product || ' is good' ELSE review END\n      down: review\n",
        old_writes: &["INSERT INTO reviews VALUES (3, 'p3', NULL)"],
        new_writes: &["INSERT INTO reviews VALUES (4, 'p4', 'great')"],
        new_refused: &["INSERT INTO reviews VALUES (5, 'p5', NULL)"],
        open: &[("SELECT string_agg(coalesce(review, '-'), ',' ORDER BY id) FROM reviews", "-,fine,-,great")],
        open_new: &[("SELECT string_agg(review, ',' ORDER BY id) FROM reviews", "p1 is good,fine,p3 is good,great")],
        done: &[
            ("SELECT string_agg(review, ',' ORDER BY id) FROM reviews", "p1 is good,fine,p3 is good,great"),
            ("SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'reviews'::regclass AND attname = 'review'", "true"),
        ],
    },
    Case {
        name: "alter_column_check_in_place",
        setup: "CREATE TABLE people (id int PRIMARY KEY, name text); INSERT INTO people VALUES (1, 'alice');",
        migration: "operations:\n  - alter_column:\n      table: people\n      column: name\n      check:\n        name: name_length\n        constraint: length(name) > 3\n      up: name\n      down: name\n",
        old_writes: &["INSERT INTO people VALUES (2, 'bobby')"],
        new_writes: &["INSERT INTO people VALUES (3, 'carol')"],
        new_refused: &["INSERT INTO people VALUES (4, 'al')"],
        open: &[("SELECT count(*)::text FROM people", "3")],
        open_new: &[],
        done: &[("SELECT convalidated::text FROM pg_constraint WHERE conname = 'name_length'", "true")],
    },
    Case {
        name: "alter_column_references",
        setup: "CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users VALUES (1); CREATE TABLE posts (id int PRIMARY KEY, user_id int); INSERT INTO posts VALUES (1, 1), (2, 99);",
        migration: "operations:\n  - alter_column:\n      table: posts\n      column: user_id\n      references:\n        name: fk_users_id\n        table: users\n        column: id\n      up: SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE users.id = user_id) THEN user_id ELSE NULL END\n      down: user_id\n",
        old_writes: &["INSERT INTO posts VALUES (3, 42)"],
        new_writes: &["INSERT INTO posts VALUES (4, 1)"],
        new_refused: &["INSERT INTO posts VALUES (5, 77)"],
        open: &[("SELECT string_agg(coalesce(_pgshift_new_user_id::text, 'null'), ',' ORDER BY id) FROM posts", "1,null,null,1")],
        open_new: &[],
        done: &[
            ("SELECT string_agg(coalesce(user_id::text, 'null'), ',' ORDER BY id) FROM posts", "1,null,null,1"),
            ("SELECT convalidated::text FROM pg_constraint WHERE conname = 'fk_users_id'", "true"),
        ],
    },
    Case {
        name: "alter_column_unique_transformed",
        setup: "CREATE TABLE tags (id int PRIMARY KEY, label text); INSERT INTO tags VALUES (1, 'x'), (2, 'x');",
        migration: "operations:\n  - alter_column:\n      table: tags\n      column: label\n      unique:\n        name: tags_label_key\n      up: label || '-' || id\n      down: label\n",
        old_writes: &["INSERT INTO tags VALUES (3, 'x')"],
        new_writes: &["INSERT INTO tags VALUES (4, 'y')"],
        new_refused: &["INSERT INTO tags VALUES (5, 'y')"],
        open: &[("SELECT string_agg(_pgshift_new_label, ',' ORDER BY id) FROM tags", "x-1,x-2,x-3,y")],
        open_new: &[],
        done: &[
            // After the rollback the old column is the truth again; the second start's
            // backfill applies `up` to the row the new version wrote, too.
            ("SELECT string_agg(label, ',' ORDER BY id) FROM tags", "x-1,x-2,x-3,y-4"),
            ("SELECT contype::text FROM pg_constraint WHERE conname = 'tags_label_key'", "u"),
        ],
    },
    Case {
        name: "alter_column_comment_default",
        setup: "CREATE TABLE t (id int PRIMARY KEY, status text DEFAULT 'a'); COMMENT ON COLUMN t.status IS 'old';",
        migration: "operations:\n  - alter_column:\n      table: t\n      column: status\n      comment: new comment\n      default: \"'b'\"\n      up: status\n      down: status\n",
        old_writes: &["INSERT INTO t (id) VALUES (1)"],
        new_writes: &["INSERT INTO t (id) VALUES (2)"],
        new_refused: &[],
        open: &[("SELECT string_agg(status, ',' ORDER BY id) FROM t", "b,b")],
        open_new: &[],
        done: &[("SELECT col_description('t'::regclass, 2)", "new comment")],
    },
    Case {
        name: "create_index",
        setup: "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;",
        migration: "operations:\n  - create_index:\n      name: t_v_partial\n      table: t\n      columns: [v]\n      predicate: v > 10\n",
        old_writes: &["INSERT INTO t VALUES (101, 101)"],
        new_writes: &["INSERT INTO t VALUES (102, 102)"],
        new_refused: &[],
        open: &[("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_v_partial'::regclass", "true")],
        open_new: &[],
        done: &[("SELECT pg_get_indexdef('t_v_partial'::regclass)", "CREATE INDEX t_v_partial ON public.t USING btree (v) WHERE (v > 10)")],
    },
    Case {
        name: "create_index_qualified_collation",
        setup: "CREATE SCHEMA ops; CREATE COLLATION ops.\"bytes.v1\" FROM \"C\"; CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 100) g;",
        migration: "operations:\n  - create_index:\n      name: t_name_bytes\n      table: t\n      columns:\n        - column: name\n          collate: {schema: ops, name: bytes.v1}\n          opclass: {schema: pg_catalog, name: text_pattern_ops}\n",
        old_writes: &["INSERT INTO t VALUES (101, 'x')"],
        new_writes: &["INSERT INTO t VALUES (102, 'y')"],
        new_refused: &[],
        open: &[("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_name_bytes'::regclass", "true")],
        open_new: &[],
        done: &[("SELECT pg_get_indexdef('t_name_bytes'::regclass)", "CREATE INDEX t_name_bytes ON public.t USING btree (name COLLATE ops.\"bytes.v1\" text_pattern_ops)")],
    },
    Case {
        name: "drop_index",
        setup: "CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v ON t (v);",
        migration: "operations:\n  - drop_index:\n      name: t_v\n",
        old_writes: &["INSERT INTO t VALUES (1, 1)"],
        new_writes: &["INSERT INTO t VALUES (2, 2)"],
        new_refused: &[],
        open: &[("SELECT (to_regclass('t_v') IS NOT NULL)::text", "true")],
        open_new: &[],
        done: &[("SELECT (to_regclass('t_v') IS NULL)::text", "true")],
    },
    Case {
        name: "create_constraint_check_transformed",
        setup: "CREATE TABLE tickets (id int PRIMARY KEY, zip int); INSERT INTO tickets VALUES (1, -5), (2, 7);",
        migration: "operations:\n  - create_constraint:\n      type: check\n      table: tickets\n      name: zip_positive\n      columns: [zip]\n      check: zip > 0\n      up:\n        zip: SELECT CASE WHEN zip <= 0 THEN 1 ELSE zip END\n      down:\n        zip: zip\n",
        old_writes: &["INSERT INTO tickets VALUES (3, -1)"],
        new_writes: &["INSERT INTO tickets VALUES (4, 9)"],
        new_refused: &["INSERT INTO tickets VALUES (5, -9)"],
        open: &[("SELECT string_agg(_pgshift_new_zip::text, ',' ORDER BY id) FROM tickets", "1,7,1,9")],
        open_new: &[("SELECT string_agg(zip::text, ',' ORDER BY id) FROM tickets", "1,7,1,9")],
        done: &[
            ("SELECT string_agg(zip::text, ',' ORDER BY id) FROM tickets", "1,7,1,9"),
            ("SELECT convalidated::text FROM pg_constraint WHERE conname = 'zip_positive'", "true"),
        ],
    },
    Case {
        name: "create_constraint_unique",
        setup: "CREATE TABLE s (id int PRIMARY KEY, a text, b int); INSERT INTO s VALUES (1, 'x', 1);",
        migration: "operations:\n  - create_constraint:\n      type: unique\n      table: s\n      name: s_a_b_key\n      columns: [a, b]\n      up:\n        a: a\n        b: b\n      down:\n        a: a\n        b: b\n",
        old_writes: &["INSERT INTO s VALUES (2, 'x', 2)"],
        new_writes: &["INSERT INTO s VALUES (3, 'y', 1)"],
        new_refused: &["INSERT INTO s VALUES (4, 'x', 1)"],
        open: &[("SELECT count(*)::text FROM s", "3")],
        open_new: &[],
        done: &[("SELECT contype::text FROM pg_constraint WHERE conname = 's_a_b_key'", "u")],
    },
    // Renames with a later operation on the renamed table or column in the same migration:
    // the renames go last in complete, after the steps planned against the old names (before,
    // the first failed at complete and the second completed without dropping the column).
    Case {
        name: "rename_table_then_drop_column",
        setup: "CREATE TABLE pay (id int PRIMARY KEY, note text, keep int); INSERT INTO pay VALUES (1, 'a', 1);",
        migration: "operations:\n  - rename_table:\n      from: pay\n      to: charges\n  - drop_column:\n      table: charges\n      column: note\n      down: \"'gone'\"\n",
        old_writes: &["INSERT INTO pay (id, note, keep) VALUES (2, 'b', 2)"],
        new_writes: &["INSERT INTO charges (id, keep) VALUES (3, 3)"],
        new_refused: &[],
        open: &[("SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM pay", "1:a,2:b,3:gone")],
        open_new: &[],
        done: &[("SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'charges'::regclass AND attnum > 0 AND NOT attisdropped", "id,keep")],
    },
    Case {
        name: "rename_drop_rename_another",
        setup: "CREATE TABLE pay (id int PRIMARY KEY, note text, keep int); INSERT INTO pay VALUES (1, 'a', 1);",
        migration: "operations:\n  - rename_column:\n      table: pay\n      from: note\n      to: remark\n  - rename_column:\n      table: pay\n      from: remark\n      to: comment\n  - drop_column:\n      table: pay\n      column: comment\n      down: \"'gone'\"\n  - rename_column:\n      table: pay\n      from: keep\n      to: kept\n",
        old_writes: &["INSERT INTO pay (id, note, keep) VALUES (2, 'b', 2)"],
        new_writes: &["INSERT INTO pay (id, kept) VALUES (3, 3)"],
        new_refused: &[],
        open: &[("SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM pay", "1:a,2:b,3:gone")],
        open_new: &[],
        done: &[("SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'pay'::regclass AND attnum > 0 AND NOT attisdropped", "id,kept")],
    },
    Case {
        name: "rename_retype_rename_table",
        setup: "CREATE TABLE pay (id int PRIMARY KEY, note text, keep int); INSERT INTO pay VALUES (1, 'a', 1);",
        migration: "operations:\n  - rename_column:\n      table: pay\n      from: keep\n      to: kept\n  - alter_column:\n      table: pay\n      column: kept\n      type: bigint\n  - rename_table:\n      from: pay\n      to: charges\n",
        old_writes: &["INSERT INTO pay (id, note, keep) VALUES (2, 'b', 2)", "UPDATE pay SET keep = 10 WHERE id = 1"],
        new_writes: &["INSERT INTO charges (id, kept) VALUES (3, 30)"],
        new_refused: &[],
        open: &[("SELECT string_agg(id || ':' || keep, ',' ORDER BY id) FROM pay WHERE id < 3", "1:10,2:2")],
        open_new: &[("SELECT string_agg(id || ':' || kept, ',' ORDER BY id) FROM charges", "1:10,2:2,3:30")],
        done: &[
            ("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'charges'::regclass AND attnum > 0 AND NOT attisdropped", "id integer,note text,kept bigint"),
            ("SELECT string_agg(id || ':' || kept, ',' ORDER BY id) FROM charges WHERE id < 3", "1:10,2:2"),
        ],
    },
    Case {
        name: "change_a_type_then_rename_the_column",
        setup: "CREATE TABLE pay (id int PRIMARY KEY, keep int); INSERT INTO pay VALUES (1, 1);",
        migration: "operations:\n  - alter_column:\n      table: pay\n      column: keep\n      type: bigint\n  - rename_column:\n      table: pay\n      from: keep\n      to: kept\n",
        old_writes: &["INSERT INTO pay (id, keep) VALUES (2, 2)"],
        new_writes: &["INSERT INTO pay (id, kept) VALUES (3, 30)"],
        new_refused: &[],
        open: &[],
        open_new: &[("SELECT string_agg(id || ':' || kept, ',' ORDER BY id) FROM pay", "1:1,2:2,3:30")],
        done: &[("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'pay'::regclass AND attnum > 0 AND NOT attisdropped", "id integer,kept bigint")],
    },
    // pgshift run by a superuser on a table another role owns (a serial key: its sequence
    // must have the table's owner): the copy takes the owner before the swap gives it the
    // sequence (before, the swap failed: "sequence must have same owner as table").
    Case {
        name: "copy_of_another_roles_table",
        setup: "DO $r$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'co_owner') THEN CREATE ROLE co_owner; END IF; END $r$;
                CREATE TABLE items (id serial PRIMARY KEY, price int NOT NULL);
                INSERT INTO items (price) SELECT g FROM generate_series(1, 50) g;
                ALTER TABLE items OWNER TO co_owner;",
        migration: "operations:\n  - alter_column:\n      table: items\n      column: price\n      type: bigint\n",
        old_writes: &["INSERT INTO items (price) VALUES (51)"],
        new_writes: &["INSERT INTO items (price) VALUES (52)"],
        new_refused: &[],
        open: &[("SELECT count(*)::text FROM items", "52")],
        open_new: &[],
        done: &[
            ("SELECT count(*) || ':' || sum(price) || ':' || pg_typeof(max(price)) FROM items", "52:1378:bigint"),
            ("SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname LIKE 'items%' AND relnamespace = 'public'::regnamespace", "co_owner"),
            ("SELECT pg_get_serial_sequence('items', 'id')", "public.items_id_seq"),
        ],
    },
    Case {
        name: "drop_constraint",
        setup: "CREATE TABLE p (id int PRIMARY KEY, title text CONSTRAINT title_length CHECK (length(title) > 3));",
        migration: "operations:\n  - drop_constraint:\n      table: p\n      name: title_length\n      up: title\n      down: title\n",
        old_writes: &["INSERT INTO p VALUES (1, 'long enough')"],
        new_writes: &["INSERT INTO p VALUES (2, 'also long')"],
        new_refused: &[],
        open: &[("SELECT count(*)::text FROM pg_constraint WHERE conname = 'title_length'", "1")],
        open_new: &[],
        done: &[("SELECT count(*)::text FROM pg_constraint WHERE conname = 'title_length'", "0")],
    },
    Case {
        name: "drop_multicolumn_constraint",
        setup: "CREATE TABLE m (id int PRIMARY KEY, a int, b int, CONSTRAINT a_lt_b CHECK (a < b));",
        migration: "operations:\n  - drop_multicolumn_constraint:\n      table: m\n      name: a_lt_b\n      up:\n        a: a\n        b: b\n      down:\n        a: a\n        b: b\n",
        old_writes: &["INSERT INTO m VALUES (1, 1, 2)"],
        new_writes: &[],
        new_refused: &[],
        open: &[],
        open_new: &[],
        done: &[("SELECT count(*)::text FROM pg_constraint WHERE conname = 'a_lt_b'", "0")],
    },
    Case {
        name: "rename_constraint",
        setup: "CREATE TABLE p (id int PRIMARY KEY, n int CONSTRAINT n_check CHECK (n > 0));",
        migration: "operations:\n  - rename_constraint:\n      table: p\n      from: n_check\n      to: n_positive\n",
        old_writes: &["INSERT INTO p VALUES (1, 1)"],
        new_writes: &[],
        new_refused: &["INSERT INTO p VALUES (2, -1)"],
        open: &[],
        open_new: &[],
        done: &[("SELECT count(*)::text FROM pg_constraint WHERE conname = 'n_positive'", "1")],
    },
    Case {
        name: "set_replica_identity",
        setup: "CREATE TABLE r (id int PRIMARY KEY, v int);",
        migration: "operations:\n  - set_replica_identity:\n      table: r\n      identity:\n        type: full\n",
        old_writes: &["INSERT INTO r VALUES (1, 1)"],
        new_writes: &["INSERT INTO r VALUES (2, 2)"],
        new_refused: &[],
        open: &[("SELECT relreplident::text FROM pg_class WHERE oid = 'r'::regclass", "f")],
        open_new: &[],
        done: &[("SELECT relreplident::text FROM pg_class WHERE oid = 'r'::regclass", "f")],
    },
    Case {
        name: "sql",
        setup: "SELECT 1",
        migration: "operations:\n  - sql:\n      up: CREATE TABLE audit (id int)\n      down: DROP TABLE audit\n",
        old_writes: &["INSERT INTO audit VALUES (1)"],
        new_writes: &[],
        new_refused: &[],
        open: &[("SELECT count(*)::text FROM audit", "1")],
        open_new: &[],
        done: &[("SELECT (to_regclass('audit') IS NOT NULL)::text", "true")],
    },
];

/// A range-partitioned table: a partition per month of 2026, the last one partitioned again
/// by hash, and a default partition; a customers table it references.
macro_rules! range_payments {
    () => {
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 10) g;
         CREATE TABLE payments (id bigserial, customer_id int NOT NULL REFERENCES customers (id),
             amount int NOT NULL, created_at timestamptz NOT NULL, note text,
             PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
         DO $$ BEGIN FOR m IN 1..11 LOOP
           EXECUTE format('CREATE TABLE payments_%s PARTITION OF payments FOR VALUES FROM (%L) TO (%L)',
             lpad(m::text, 2, '0'), make_date(2026, m, 1), make_date(2026, m, 1) + interval '1 month');
         END LOOP; END $$;
         CREATE TABLE payments_12 PARTITION OF payments FOR VALUES FROM ('2026-12-01') TO ('2027-01-01') PARTITION BY HASH (id);
         CREATE TABLE payments_12_a PARTITION OF payments_12 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE payments_12_b PARTITION OF payments_12 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         CREATE TABLE payments_default PARTITION OF payments DEFAULT;
         CREATE INDEX payments_customer ON payments (customer_id);
         INSERT INTO payments (customer_id, amount, created_at)
           SELECT 1 + g % 10, g, timestamptz '2026-01-01' + (g % 400) * interval '1 day' FROM generate_series(1, 800) g;"
    };
}

/// The operations on partitioned tables (issue 18): range (with a sub-partitioned
/// partition and a default one), list and hash.
const PARTITIONED_CASES: &[Case] = &[
    Case {
        name: "create_index_partitioned",
        setup: range_payments!(),
        migration: "operations:\n  - create_index:\n      name: payments_amount\n      table: payments\n      columns: [amount]\n",
        old_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (1, -1, '2026-12-24')"],
        new_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (2, -2, '2030-01-01')"],
        new_refused: &[],
        open: &[
            // The partitioned table's index and every partition's (the sub-partitioned
            // one's too), all valid and attached.
            ("SELECT count(*) || ':' || bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%payments\\_amount'", "16:true"),
            ("SELECT count(*)::text FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE c.relname LIKE '%payments\\_amount'", "15"),
        ],
        open_new: &[("SELECT count(*)::text FROM payments WHERE amount < 0", "2")],
        done: &[
            ("SELECT count(*) || ':' || bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%payments\\_amount'", "16:true"),
            ("SELECT pg_get_indexdef('payments_amount'::regclass)", "CREATE INDEX payments_amount ON ONLY public.payments USING btree (amount)"),
        ],
    },
    Case {
        name: "alter_column_type_partitioned",
        setup: range_payments!(),
        migration: "operations:\n  - alter_column:\n      table: payments\n      column: amount\n      type: bigint\n",
        old_writes: &[
            "INSERT INTO payments (customer_id, amount, created_at) VALUES (1, -1, '2026-12-24')",
            "UPDATE payments SET amount = amount + 1000 WHERE id = 1",
        ],
        new_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (2, 50000, '2030-01-01')"],
        new_refused: &[],
        open: &[("SELECT sum(amount)::text FROM payments WHERE amount < 0 OR id = 1", "1000")],
        open_new: &[
            ("SELECT sum(amount)::text FROM payments WHERE amount < 0 OR amount = 50000 OR id = 1", "51000"),
            ("SELECT pg_typeof(amount)::text FROM payments LIMIT 1", "bigint"),
        ],
        done: &[
            ("SELECT string_agg(DISTINCT format_type(a.atttypid, a.atttypmod), ',') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname LIKE 'payments%' AND c.relkind IN ('r', 'p') AND a.attname = 'amount'", "bigint"),
            ("SELECT count(*)::text FROM payments", "802"),
            ("SELECT count(*)::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname LIKE 'payments%' AND a.attname LIKE '\\_pgshift%' AND NOT a.attisdropped", "0"),
        ],
    },
    Case {
        name: "alter_primary_key_referenced_by_partitioned",
        setup: range_payments!(),
        migration: "operations:\n  - alter_primary_key:\n      table: customers\n      type: bigint\n",
        old_writes: &[
            "INSERT INTO customers (name) VALUES ('old')",
            "INSERT INTO payments (customer_id, amount, created_at) SELECT id, -1, '2026-12-20' FROM customers WHERE name = 'old'",
        ],
        new_writes: &[
            "INSERT INTO customers (name) VALUES ('new')",
            "INSERT INTO payments (customer_id, amount, created_at) SELECT id, -2, '2031-01-01' FROM customers WHERE name = 'new'",
        ],
        new_refused: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (999999, 1, '2026-05-05')"],
        open: &[("SELECT string_agg(c.name, ',' ORDER BY p.amount) FROM payments p JOIN customers c ON c.id = p.customer_id WHERE p.amount < 0", "new,old")],
        open_new: &[("SELECT string_agg(pg_typeof(p.customer_id)::text, ',') FROM payments p WHERE p.amount < 0", "bigint,bigint")],
        done: &[
            ("SELECT string_agg(c.name, ',' ORDER BY p.amount) FROM payments p JOIN customers c ON c.id = p.customer_id WHERE p.amount < 0", "new,old"),
            ("SELECT string_agg(DISTINCT format_type(a.atttypid, a.atttypmod), ',') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE (c.relname LIKE 'payments%' AND c.relkind IN ('r', 'p') AND a.attname = 'customer_id') OR (c.relname = 'customers' AND a.attname = 'id')", "bigint"),
            ("SELECT count(*) || ':' || bool_and(convalidated) FROM pg_constraint WHERE conname = 'payments_customer_id_fkey'", "16:true"),
            // The partitions' indexes on the column have their names back.
            ("SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'payments_12_a'::regclass", "payments_12_a_customer_id_idx,payments_12_a_pkey"),
            ("SELECT count(*)::text FROM pg_class WHERE relname LIKE '%\\_pgshift\\_%'", "0"),
        ],
    },
    Case {
        name: "partition_maintenance",
        setup: concat!(
            range_payments!(),
            "CREATE TABLE payments_2025 (id bigint NOT NULL, customer_id int NOT NULL, amount int NOT NULL, created_at timestamptz NOT NULL, note text);
             INSERT INTO payments_2025 VALUES (100001, 1, 7, '2025-03-01', 'a'), (100002, 2, 8, '2025-09-01', 'b');"
        ),
        migration: "operations:
  - create_partition:
      table: payments
      name: payments_2027_03
      bound: FOR VALUES FROM ('2027-03-01') TO ('2027-04-01')
  - attach_partition:
      table: payments
      partition: payments_2025
      bound: FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
  - detach_partition:
      table: payments
      partition: payments_01
  - drop_partition:
      table: payments
      partition: payments_02
",
        old_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (3, -1, '2025-06-01')"],
        new_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (4, -2, '2025-07-01')"],
        // The attached table's rows obey the partitioned table's foreign key and key.
        new_refused: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (999, 1, '2025-08-01')"],
        open: &[
            ("SELECT count(*)::text FROM payments WHERE created_at < '2026-01-01'", "4"),
            ("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_inherits h ON h.inhrelid = c.oid WHERE h.inhparent = 'payments'::regclass AND relname IN ('payments_2025', 'payments_2027_03', 'payments_01', 'payments_02')", "payments_01,payments_02,payments_2025,payments_2027_03"),
        ],
        open_new: &[("SELECT count(*)::text FROM payments_2025", "4")],
        done: &[
            ("SELECT count(*)::text FROM payments WHERE created_at < '2026-01-01'", "4"),
            ("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_inherits h ON h.inhrelid = c.oid WHERE h.inhparent = 'payments'::regclass AND relname IN ('payments_2025', 'payments_2027_03', 'payments_01', 'payments_02')", "payments_2025,payments_2027_03"),
            // Detached, the partition is a table of its own with its rows; dropped, gone.
            ("SELECT (SELECT relispartition FROM pg_class WHERE oid = 'payments_01'::regclass) || ':' || (SELECT count(*) FROM payments_01 WHERE created_at < '2026-02-01') || ':' || (to_regclass('payments_02') IS NULL)", "false:62:true"),
            ("SELECT count(*)::text FROM payments WHERE created_at >= '2026-01-01' AND created_at < '2026-03-01'", "0"),
            // The attached table took over the indexes and the foreign key built on it
            // first (no second copy of either), and the helper checks are gone.
            ("SELECT string_agg(conname || ':' || contype::text || ':' || (conparentid <> 0), ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'payments_2025'::regclass AND contype <> 'n'", "payments_2025_payments_pkey:p:true,payments_customer_id_fkey:f:true"),
            ("SELECT count(*)::text FROM pg_index WHERE indrelid = 'payments_2025'::regclass", "2"),
            ("SELECT count(*)::text FROM pg_constraint WHERE conname LIKE '\\_pgshift\\_pb%'", "0"),
        ],
    },
    Case {
        name: "partition_table_by_attach",
        setup: "DO $r$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pt_reader') THEN CREATE ROLE pt_reader; END IF; END $r$;
                CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL CHECK (price >= 0),
                    created_at timestamptz NOT NULL DEFAULT '2026-06-01', note text);
                INSERT INTO orders (price, created_at) SELECT g, timestamptz '2026-01-01' + g * interval '1 day' FROM generate_series(1, 200) g;
                CREATE INDEX orders_created_at ON orders (created_at);
                CREATE VIEW cheap_orders AS SELECT id, price FROM orders WHERE price < 100;
                GRANT SELECT ON orders TO pt_reader;
                CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
                CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();",
        migration: "operations:
  - partition_table:
      table: orders
      by: RANGE (created_at)
      existing:
        name: orders_until_2027
        bound: FOR VALUES FROM (MINVALUE) TO ('2027-01-01')
      partitions:
        - name: orders_2027
          bound: FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
",
        old_writes: &["INSERT INTO orders (price, created_at) VALUES (-0, '2026-12-31')", "UPDATE orders SET price = price + 1000 WHERE id = 1"],
        new_writes: &["INSERT INTO orders (price) VALUES (7)"],
        new_refused: &["INSERT INTO orders (price) VALUES (-1)"],
        open: &[("SELECT count(*) || ':' || sum(price) FROM orders", "202:21107")],
        open_new: &[],
        done: &[
            ("SELECT count(*) || ':' || sum(price) FROM orders", "202:21107"),
            ("SELECT relkind::text FROM pg_class WHERE oid = 'orders'::regclass", "p"),
            // Every row in the partition its key says; the new partition takes new rows.
            ("SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM orders", "orders_until_2027"),
            ("WITH i AS (INSERT INTO orders (price, created_at) VALUES (1, '2027-02-02') RETURNING tableoid::regclass::text || ':' || note AS r) SELECT r FROM i", "orders_2027:touched"),
            // What hung on the table: its key (with the partition key), index, check,
            // privileges, trigger (once per partition), the view over it, its sequence.
            ("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'p'", "PRIMARY KEY (id, created_at)"),
            ("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname IN ('orders_pkey', 'orders_created_at', 'orders_price_check') OR (relkind = 'I' AND relname LIKE 'orders%')", "orders_created_at,orders_pkey"),
            ("SELECT has_table_privilege('pt_reader', 'orders', 'SELECT')::text", "true"),
            ("SELECT string_agg(tgrelid::regclass::text, ',' ORDER BY tgrelid::regclass::text) FROM pg_trigger WHERE tgname = 'orders_touch'", "orders,orders_2027,orders_until_2027"),
            ("SELECT ((SELECT count(*) FROM cheap_orders) = (SELECT count(*) FROM orders WHERE price < 100))::text", "true"),
            ("SELECT string_agg(DISTINCT d.refobjid::regclass::text, ',') FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid WHERE w.ev_class = 'cheap_orders'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> 'cheap_orders'::regclass", "orders"),
            ("SELECT pg_get_serial_sequence('orders', 'id')", "public.orders_id_seq"),
            ("SELECT count(*)::text FROM pg_constraint WHERE conname LIKE '\\_pgshift%'", "0"),
        ],
    },
    Case {
        name: "partition_table_by_copy",
        setup: "DO $r$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pc_reader') THEN CREATE ROLE pc_reader; END IF;
                                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pc_owner') THEN CREATE ROLE pc_owner; END IF; END $r$;
                CREATE TABLE customers (id int PRIMARY KEY);
                INSERT INTO customers SELECT generate_series(1, 3);
                CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers (id), price int NOT NULL CHECK (price >= 0),
                    created_at timestamptz NOT NULL DEFAULT '2027-06-01', ref text, note text, UNIQUE (ref, created_at));
                INSERT INTO orders (customer_id, price, created_at, ref) SELECT 1 + g % 3, g, timestamptz '2026-01-01' + g * interval '1 day', 'r' || g FROM generate_series(1, 200) g;
                CREATE INDEX orders_created_at ON orders (created_at);
                CREATE STATISTICS orders_stats ON price, created_at FROM orders;
                CREATE VIEW cheap_orders AS SELECT id, price FROM orders WHERE price < 100;
                GRANT SELECT ON orders TO pc_reader;
                ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
                CREATE POLICY orders_read ON orders FOR SELECT TO pc_reader USING (price < 150);
                CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
                CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
                ALTER TABLE orders OWNER TO pc_owner;",
        // No `existing`: the rows are copied into the partitions.
        migration: "operations:
  - partition_table:
      table: orders
      by: RANGE (created_at)
      partitions:
        - name: orders_2026
          bound: FOR VALUES FROM (MINVALUE) TO ('2027-01-01')
        - name: orders_2027
          bound: FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
",
        old_writes: &[
            "INSERT INTO orders (price, created_at) VALUES (0, '2027-03-01')",
            "UPDATE orders SET price = price + 1000 WHERE id = 1",
            "DELETE FROM orders WHERE id = 2",
            // A row that moves to the other partition.
            "UPDATE orders SET created_at = '2027-05-05' WHERE id = 3",
        ],
        new_writes: &["INSERT INTO orders (price) VALUES (7)"],
        new_refused: &["INSERT INTO orders (price) VALUES (-1)", "INSERT INTO orders (price, customer_id) VALUES (1, 99)"],
        // The copy follows every write (the trigger after the switch).
        open: &[
            ("SELECT count(*) || ':' || sum(price) FROM orders", "201:21105"),
            ("SELECT ((SELECT string_agg(o::text, ';' ORDER BY id) FROM orders o) = (SELECT string_agg(p::text, ';' ORDER BY id) FROM _pgshift_part_orders p))::text", "true"),
        ],
        open_new: &[],
        done: &[
            ("SELECT count(*) || ':' || sum(price) FROM orders", "201:21105"),
            ("SELECT relkind::text FROM pg_class WHERE oid = 'orders'::regclass", "p"),
            ("SELECT string_agg(t || ':' || n, ',' ORDER BY t) FROM (SELECT tableoid::regclass::text AS t, count(*) AS n FROM orders GROUP BY 1) c", "orders_2026:198,orders_2027:3"),
            ("WITH i AS (INSERT INTO orders (price, created_at) VALUES (1, '2027-02-02') RETURNING tableoid::regclass::text || ':' || note AS r) SELECT r FROM i", "orders_2027:touched"),
            ("SELECT string_agg(pg_get_constraintdef(oid), ',' ORDER BY contype) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'f', 'u', 'c')", "CHECK ((price >= 0)),FOREIGN KEY (customer_id) REFERENCES customers(id),PRIMARY KEY (id, created_at),UNIQUE (ref, created_at)"),
            ("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'I' AND relname LIKE 'orders%'", "orders_created_at,orders_pkey,orders_ref_created_at_key"),
            ("SELECT string_agg(stxname, ',') FROM pg_statistic_ext WHERE stxrelid = 'orders'::regclass", "orders_stats"),
            ("SELECT has_table_privilege('pc_reader', 'orders', 'SELECT') || ':' || has_table_privilege('pc_reader', 'orders_2027', 'SELECT')", "true:true"),
            ("SELECT string_agg(c.relname || ':' || c.relrowsecurity || ':' || (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), ',' ORDER BY c.relname) FROM pg_class c WHERE c.relname IN ('orders', 'orders_2026') AND c.relkind IN ('r', 'p')", "orders:true:1,orders_2026:true:1"),
            ("SELECT string_agg(tgrelid::regclass::text, ',' ORDER BY tgrelid::regclass::text) FROM pg_trigger WHERE tgname = 'orders_touch'", "orders,orders_2026,orders_2027"),
            ("SELECT string_agg(DISTINCT d.refobjid::regclass::text, ',') FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid WHERE w.ev_class = 'cheap_orders'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> 'cheap_orders'::regclass", "orders"),
            ("SELECT pg_get_serial_sequence('orders', 'id')", "public.orders_id_seq"),
            ("SELECT count(*)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname LIKE '\\_pgshift%'", "0"),
            // The table's owner owns its partitions and their indexes (pgshift ran as
            // another role, which made them).
            ("SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname LIKE 'orders%' AND relkind IN ('r', 'p', 'i', 'I', 'S')", "pc_owner"),
        ],
    },
    Case {
        name: "partition_table_referenced_by_attach",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL);
                INSERT INTO orders (price) SELECT g FROM generate_series(1, 50) g;
                CREATE TABLE order_items (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES orders (id));
                INSERT INTO order_items (order_id) SELECT g FROM generate_series(1, 50) g;
                CREATE PUBLICATION orders_pub FOR TABLE orders WITH (publish_via_partition_root = true);
                ALTER TABLE orders SET (fillfactor = 90); ALTER TABLE orders REPLICA IDENTITY FULL;",
        // By the key itself: the foreign key can point at the partitioned table.
        migration: "operations:
  - partition_table:
      table: orders
      by: RANGE (id)
      existing:
        name: orders_low
        bound: FOR VALUES FROM (MINVALUE) TO (1000)
      partitions:
        - name: orders_high
          bound: FOR VALUES FROM (1000) TO (MAXVALUE)
",
        old_writes: &["INSERT INTO orders (price) VALUES (51)", "INSERT INTO order_items (order_id) VALUES (51)"],
        new_writes: &["INSERT INTO orders (id, price) VALUES (500, 52)"],
        // While open, the table's rows must stay in the bound of the partition it becomes.
        new_refused: &["INSERT INTO order_items (order_id) VALUES (9999)", "INSERT INTO orders (id, price) VALUES (1500, 53)"],
        open: &[("SELECT count(*)::text FROM orders", "52")],
        open_new: &[],
        done: &[
            ("SELECT string_agg(t || ':' || n, ',' ORDER BY t) FROM (SELECT tableoid::regclass::text AS t, count(*) AS n FROM orders GROUP BY 1) c", "orders_low:52"),
            ("WITH i AS (INSERT INTO orders (id, price) VALUES (1500, 53) RETURNING tableoid::regclass::text AS t) SELECT t FROM i", "orders_high"),
            ("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'p'", "PRIMARY KEY (id)"),
            ("SELECT string_agg(confrelid::regclass || ':' || convalidated, ',') FROM pg_constraint WHERE conname = 'order_items_order_id_fkey' AND conrelid = 'order_items'::regclass", "orders:true"),
            ("SELECT string_agg(prrelid::regclass::text, ',') FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = 'orders_pub'", "orders"),
            ("SELECT string_agg(tablename::text, ',') FROM pg_publication_tables WHERE pubname = 'orders_pub'", "orders"),
            // Storage parameters and the replica identity on the partitions (a partitioned
            // table takes no storage parameter; logical replication reads each partition's
            // identity).
            ("SELECT string_agg(relname || ':' || coalesce(array_to_string(reloptions, ' '), '-') || ':' || relreplident::text, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'orders%' AND relkind IN ('r', 'p')", "orders:-:f,orders_high:fillfactor=90:f,orders_low:fillfactor=90:f"),
        ],
    },
    Case {
        name: "partition_table_referenced_by_copy",
        setup: "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL);
                INSERT INTO orders (price) SELECT g FROM generate_series(1, 50) g;
                CREATE TABLE order_items (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES orders (id) ON DELETE CASCADE);
                INSERT INTO order_items (order_id) SELECT g FROM generate_series(1, 50) g;
                CREATE PUBLICATION orders_pub FOR TABLE orders WITH (publish_via_partition_root = true);
                ALTER TABLE orders SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01);
                CREATE UNIQUE INDEX orders_id_price ON orders (id, price); ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_id_price;",
        migration: "operations:
  - partition_table:
      table: orders
      by: HASH (id)
      partitions:
        - name: orders_0
          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 0)
        - name: orders_1
          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 1)
",
        old_writes: &["INSERT INTO orders (price) VALUES (51)", "INSERT INTO order_items (order_id) VALUES (51)", "DELETE FROM orders WHERE id = 1"],
        new_writes: &["INSERT INTO orders (price) VALUES (52)"],
        new_refused: &["INSERT INTO order_items (order_id) VALUES (9999)"],
        open: &[("SELECT count(*) || ':' || (SELECT count(*) FROM order_items) FROM orders", "51:50")],
        open_new: &[],
        done: &[
            ("SELECT count(*) || ':' || sum(price) FROM orders", "51:1377"),
            ("SELECT count(DISTINCT tableoid)::text FROM orders", "2"),
            ("SELECT string_agg(confrelid::regclass || ':' || convalidated || ':' || pg_get_constraintdef(oid), ',') FROM pg_constraint WHERE conname = 'order_items_order_id_fkey' AND conrelid = 'order_items'::regclass", "orders:true:FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE"),
            ("SELECT string_agg(prrelid::regclass::text, ',') FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = 'orders_pub'", "orders"),
            // The key still cascades, through the partitioned table.
            ("WITH d AS (DELETE FROM orders WHERE id = 2 RETURNING id) SELECT count(*)::text FROM d", "1"),
            ("SELECT count(*)::text FROM order_items WHERE order_id = 2", "0"),
            ("SELECT string_agg(c.relname || ':' || coalesce(array_to_string(c.reloptions, ' '), '-') || ':' || c.relreplident::text || ':' || coalesce((SELECT x.relname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisreplident), '-'), ',' ORDER BY c.relname) FROM pg_class c WHERE c.relname LIKE 'orders%' AND c.relkind IN ('r', 'p')", "orders:-:i:orders_id_price,orders_0:fillfactor=90 autovacuum_vacuum_scale_factor=0.01:i:orders_0_id_price_idx,orders_1:fillfactor=90 autovacuum_vacuum_scale_factor=0.01:i:orders_1_id_price_idx"),
        ],
    },
    Case {
        name: "columns_partitioned",
        setup: range_payments!(),
        migration: "operations:
  - rename_column:
      table: payments
      from: amount
      to: total
  - alter_column:
      table: payments
      column: note
      nullable: false
      up: coalesce(note, 'none')
      down: note
",
        old_writes: &[
            "INSERT INTO payments (customer_id, amount, created_at) VALUES (1, -1, '2026-12-24')",
            "UPDATE payments SET amount = amount + 1000 WHERE id = 1",
        ],
        new_writes: &["INSERT INTO payments (customer_id, total, created_at, note) VALUES (2, -2, '2030-01-01', 'n')"],
        new_refused: &["INSERT INTO payments (customer_id, total, created_at, note) VALUES (2, -3, '2030-01-01', NULL)"],
        open: &[("SELECT count(*) || ':' || sum(amount) FROM payments WHERE amount < 0 OR id = 1", "3:998")],
        open_new: &[("SELECT count(*) || ':' || sum(total) || ':' || count(*) FILTER (WHERE note = 'none') FROM payments WHERE total < 0 OR id = 1", "3:998:2")],
        done: &[
            ("SELECT count(*) || ':' || sum(total) FROM payments WHERE total < 0 OR id = 1", "3:998"),
            ("SELECT count(*)::text FROM payments WHERE note IS NULL", "0"),
            ("SELECT string_agg(DISTINCT c.relname || ':' || a.attnotnull, ',') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname IN ('payments', 'payments_12_a', 'payments_default') AND c.relkind IN ('r', 'p') AND a.attname = 'note'", "payments:true,payments_12_a:true,payments_default:true"),
            ("SELECT count(*)::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname LIKE 'payments%' AND (a.attname LIKE '\\_pgshift%' OR a.attname = 'amount') AND NOT a.attisdropped", "0"),
        ],
    },
    Case {
        name: "constraints_partitioned_range",
        setup: concat!(
            range_payments!(),
            "ALTER TABLE payments ADD CONSTRAINT note_short CHECK (length(note) < 100);"
        ),
        migration: "operations:
  - create_constraint:
      table: payments
      name: amount_sane
      type: check
      check: amount > -1000
      columns: [amount]
      up:
        amount: greatest(amount, -999)
      down:
        amount: amount
  - drop_constraint:
      table: payments
      name: note_short
      up: note
      down: note
  - rename_constraint:
      table: payments
      from: payments_customer_id_fkey
      to: payments_customer_fk
",
        old_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (1, -5000, '2026-12-24')"],
        new_writes: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (2, -2, '2030-01-01')"],
        new_refused: &["INSERT INTO payments (customer_id, amount, created_at) VALUES (2, -2000, '2030-01-01')"],
        open: &[("SELECT count(*)::text FROM payments WHERE amount < 0", "2")],
        open_new: &[("SELECT string_agg(amount::text, ',' ORDER BY amount) FROM payments WHERE amount < 0", "-999,-2")],
        done: &[
            ("SELECT string_agg(amount::text, ',' ORDER BY amount) FROM payments WHERE amount < 0", "-999,-2"),
            ("SELECT string_agg(DISTINCT conname || ':' || convalidated, ',') FROM pg_constraint WHERE conname IN ('amount_sane', 'note_short', 'payments_customer_fk', 'payments_customer_id_fkey')", "amount_sane:true,payments_customer_fk:true"),
            ("SELECT count(*)::text FROM pg_constraint WHERE conname = 'amount_sane'", "16"),
        ],
    },
    Case {
        name: "tables_partitioned",
        setup: concat!(
            range_payments!(),
            "CREATE TABLE old_log (id int, at date NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE old_log_2026 PARTITION OF old_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
        ),
        migration: "operations:
  - rename_table:
      from: payments
      to: charges
  - drop_table:
      name: old_log
  - drop_column:
      table: charges
      column: note
      down: \"'gone'\"
  - set_replica_identity:
      table: charges
      identity:
        type: full
",
        old_writes: &["INSERT INTO payments (customer_id, amount, created_at, note) VALUES (1, -1, '2026-12-24', 'x')"],
        new_writes: &["INSERT INTO charges (customer_id, amount, created_at) VALUES (2, -2, '2030-01-01')"],
        new_refused: &[],
        open: &[("SELECT count(*) || ':' || string_agg(coalesce(note, '-'), ',' ORDER BY amount) FROM payments WHERE amount < 0", "2:gone,x")],
        open_new: &[("SELECT count(*)::text FROM charges WHERE amount < 0", "2")],
        done: &[
            ("SELECT count(*)::text FROM charges WHERE amount < 0", "2"),
            ("SELECT (to_regclass('payments') IS NULL AND to_regclass('old_log') IS NULL AND to_regclass('old_log_2026') IS NULL)::text", "true"),
            ("SELECT count(*)::text FROM pg_attribute WHERE attrelid = 'charges'::regclass AND attname = 'note' AND NOT attisdropped", "0"),
            // Replica identity is each partition's own: every one FULL.
            ("SELECT coalesce(string_agg(relname || ':' || relreplident::text, ','), 'all full') FROM pg_class WHERE (relname = 'charges' OR relname LIKE 'payments\\_%') AND relkind IN ('r', 'p') AND relreplident <> 'f'", "all full"),
        ],
    },
    Case {
        name: "add_column_partitioned_list",
        setup: "CREATE TABLE events (id bigserial, region text NOT NULL, n int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
                CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
                CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
                CREATE TABLE events_other PARTITION OF events DEFAULT;
                INSERT INTO events (region, n) SELECT (ARRAY['eu', 'us', 'asia'])[1 + g % 3], g FROM generate_series(1, 30) g;",
        migration: "operations:\n  - add_column:\n      table: events\n      up: n * 10\n      column:\n        name: n10\n        type: bigint\n        nullable: false\n        check:\n          name: n10_positive\n          constraint: n10 > 0\n",
        old_writes: &["INSERT INTO events (region, n) VALUES ('eu', 100)"],
        new_writes: &["INSERT INTO events (region, n, n10) VALUES ('asia', 200, 7)"],
        new_refused: &["INSERT INTO events (region, n, n10) VALUES ('us', 1, -1)"],
        open: &[("SELECT count(*)::text FROM events", "32")],
        open_new: &[("SELECT string_agg(n10::text, ',' ORDER BY n) FROM events WHERE n >= 30", "300,1000,7")],
        done: &[
            // Rolled back and started again: the column is made afresh by `up`.
            ("SELECT string_agg(n10::text, ',' ORDER BY n) FROM events WHERE n >= 30", "300,1000,2000"),
            ("SELECT string_agg(c.relname || ':' || a.attnotnull, ',' ORDER BY c.relname) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname LIKE 'events%' AND c.relkind IN ('r', 'p') AND a.attname = 'n10'", "events:true,events_eu:true,events_other:true,events_us:true"),
            ("SELECT string_agg(conrelid::regclass || ':' || convalidated, ',' ORDER BY conrelid::regclass::text) FROM pg_constraint WHERE conname = 'n10_positive'", "events:true,events_eu:true,events_other:true,events_us:true"),
        ],
    },
    Case {
        name: "constraints_partitioned_hash",
        setup: "CREATE TABLE customers (id serial PRIMARY KEY);
                INSERT INTO customers SELECT FROM generate_series(1, 5);
                CREATE TABLE sessions (id bigint NOT NULL, customer_id int, token text, PRIMARY KEY (id)) PARTITION BY HASH (id);
                CREATE TABLE sessions_0 PARTITION OF sessions FOR VALUES WITH (MODULUS 3, REMAINDER 0);
                CREATE TABLE sessions_1 PARTITION OF sessions FOR VALUES WITH (MODULUS 3, REMAINDER 1);
                CREATE TABLE sessions_2 PARTITION OF sessions FOR VALUES WITH (MODULUS 3, REMAINDER 2);
                INSERT INTO sessions SELECT g, 1 + g % 5, 't' || g FROM generate_series(1, 30) g;",
        migration: "operations:
  - create_constraint:
      table: sessions
      name: sessions_customer_fk
      type: foreign_key
      columns: [customer_id]
      references:
        table: customers
        columns: [id]
  - create_constraint:
      table: sessions
      name: sessions_token_key
      type: unique
      columns: [id, token]
  - create_index:
      name: sessions_token
      table: sessions
      columns: [token]
",
        old_writes: &["INSERT INTO sessions VALUES (100, 1, 'old')"],
        new_writes: &["INSERT INTO sessions VALUES (101, 2, 'new')"],
        new_refused: &["INSERT INTO sessions VALUES (102, 99, 'x')"],
        open: &[("SELECT count(*)::text FROM sessions", "32")],
        open_new: &[],
        done: &[
            ("SELECT string_agg(conrelid::regclass || ':' || convalidated || ':' || (conparentid <> 0), ',' ORDER BY conrelid::regclass::text) FROM pg_constraint WHERE conname = 'sessions_customer_fk'", "sessions:true:false,sessions_0:true:true,sessions_1:true:true,sessions_2:true:true"),
            ("SELECT string_agg(conrelid::regclass || ':' || (conparentid <> 0), ',' ORDER BY conrelid::regclass::text) FROM pg_constraint WHERE contype = 'u' AND conname LIKE '%sessions\\_token\\_key'", "sessions:false,sessions_0:true,sessions_1:true,sessions_2:true"),
            ("SELECT (SELECT count(*) FROM pg_index WHERE indrelid = 'sessions_0'::regclass)::text", "3"),
        ],
    },
];

/// A rolled-back `create_partition` keeps what clients wrote into the new partition while
/// the migration was open: the rows go back through the partitioned table (here to its
/// default partition) before the partition is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn rolling_back_create_partition_keeps_the_rows_written_to_it() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(range_payments!()).await.unwrap();
    let m = Migrations::new(&[(
        "0001_p.yaml",
        "operations:\n  - create_partition:\n      table: payments\n      name: payments_2027_03\n      bound: FOR VALUES FROM ('2027-03-01') TO ('2027-04-01')\n",
    )]);
    let file = m.path().join("0001_p.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    c.batch_execute("INSERT INTO payments (customer_id, amount, created_at) VALUES (1, -5, '2027-03-15'), (2, -6, '2027-03-16')")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM payments_2027_03").await,
        2
    );
    run_ok(&db, &m.path(), &["rollback"]).await;
    assert_eq!(
        scalar_text(&c, "SELECT string_agg(tableoid::regclass || ':' || amount, ',' ORDER BY amount) FROM payments WHERE amount < 0").await.as_deref(),
        Some("payments_default:-6,payments_default:-5")
    );
    assert!(
        scalar_text(&c, "SELECT to_regclass('payments_2027_03')::text")
            .await
            .is_none()
    );
}

/// `alter_primary_key` of a partitioned table's own key (here referenced by a plain table)
/// is refused at plan, exit 2, with the reason, and `start` changes nothing: the key is the
/// partition key, whose column PostgreSQL can neither change nor drop. (Before, start went
/// as far as the referencing table's backfill and failed at its foreign key.)
#[tokio::test(flavor = "multi_thread")]
async fn alter_primary_key_of_a_partitioned_table_is_refused_before_anything_changes() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE sess (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
         CREATE TABLE sess_0 PARTITION OF sess FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE sess_1 PARTITION OF sess FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         INSERT INTO sess SELECT g, 'v' FROM generate_series(1, 100) g;
         CREATE TABLE refs (id serial PRIMARY KEY, sess_id int REFERENCES sess (id));
         INSERT INTO refs (sess_id) SELECT g FROM generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_k.yaml",
        "operations:\n  - alter_primary_key:\n      table: sess\n      type: bigint\n",
    )]);
    let file = m.path().join("0001_k.yaml");
    let file = file.to_str().unwrap();
    let before = schema_dump(&db).await;
    for command in ["plan", "start"] {
        let run = finish(&mut pgshift(&db.url, &m.path(), &[command, file])).await;
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("sess is partitioned by its key (HASH (id))"),
            "{command}: {}",
            run.stderr
        );
    }
    assert!(before == schema_dump(&db).await, "start changed the schema");
}

/// `partition_table` of a table in a publication that does not publish via the partition
/// root (by name or FOR ALL TABLES) is refused before anything changes: its subscribers
/// would receive the partitions' changes under names they do not have. Once the publication
/// publishes via the root, the same file plans.
#[tokio::test(flavor = "multi_thread")]
async fn partition_table_in_a_publication_needs_publish_via_partition_root() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL);
         INSERT INTO orders (price) VALUES (1), (2);
         CREATE PUBLICATION orders_pub FOR TABLE orders;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_p.yaml",
        "operations:\n  - partition_table:\n      table: orders\n      by: HASH (id)\n      partitions:\n        - name: orders_0\n          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 0)\n        - name: orders_1\n          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 1)\n",
    )]);
    let file = m.path().join("0001_p.yaml");
    let file = file.to_str().unwrap();
    for setup in [
        "",
        "DROP PUBLICATION orders_pub; CREATE PUBLICATION all_pub FOR ALL TABLES;",
    ] {
        c.batch_execute(setup).await.unwrap();
        let run = finish(&mut pgshift(&db.url, &m.path(), &["start", file])).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("without publish_via_partition_root"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        scalar_text(
            &c,
            "SELECT relkind::text FROM pg_class WHERE oid = 'orders'::regclass"
        )
        .await
        .as_deref(),
        Some("r")
    );
    c.batch_execute("ALTER PUBLICATION all_pub SET (publish_via_partition_root = true)")
        .await
        .unwrap();
    run_ok(&db, &m.path(), &["start", file]).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_text(&c, "SELECT string_agg(tablename::text, ',') FROM pg_publication_tables WHERE pubname = 'all_pub' AND tablename LIKE 'orders%'")
            .await
            .as_deref(),
        Some("orders")
    );
}

/// A partition made while a migration is open (by anyone, with CREATE TABLE ... PARTITION
/// OF) has the migration's columns and triggers, PostgreSQL cloning them from the
/// partitioned table: old-version writes to it reach the new version, and complete goes
/// through. The backfill at start went partition by partition.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_made_while_a_migration_is_open_gets_its_columns_and_triggers() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(range_payments!()).await.unwrap();
    let m = Migrations::new(&[(
        "0001_amount.yaml",
        "operations:\n  - alter_column:\n      table: payments\n      column: amount\n      type: bigint\n      up: amount::bigint * 10\n      down: (amount / 10)::int\n",
    )]);
    let file = m.path().join("0001_amount.yaml");
    let r = run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert!(
        r.stderr
            .contains("backfill public.payments_07 (a partition of payments)")
            && r.stderr
                .contains("backfill public.payments_12_b (a partition of payments)"),
        "{}",
        r.all()
    );
    c.batch_execute(
        "CREATE TABLE payments_2028 PARTITION OF payments FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
         INSERT INTO payments (customer_id, amount, created_at) VALUES (1, 33, '2028-05-05');",
    )
    .await
    .unwrap();
    let new = db.client().await;
    new.batch_execute("SET search_path = public_0001_amount")
        .await
        .unwrap();
    assert_eq!(
        scalar_text(
            &new,
            "SELECT amount::text FROM payments WHERE created_at = '2028-05-05'"
        )
        .await
        .as_deref(),
        Some("330")
    );
    new.batch_execute("UPDATE payments SET amount = 440 WHERE created_at = '2028-05-05'")
        .await
        .unwrap();
    assert_eq!(
        scalar_text(&c, "SELECT amount::text FROM payments_2028")
            .await
            .as_deref(),
        Some("44")
    );
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_text(
            &c,
            "SELECT amount || ':' || pg_typeof(amount) FROM payments_2028"
        )
        .await
        .as_deref(),
        Some("440:bigint")
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM payments WHERE amount <> id * 10 AND created_at < '2028-01-01'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_on_partitioned_tables() {
    for case in PARTITIONED_CASES {
        run_case(case).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_through_start_writes_rollback_start_complete() {
    for case in CASES {
        run_case(case).await;
    }
}

/// A row changed around pgshift's triggers (here with them switched off) is found by the
/// check before complete: complete stops with a report naming the key, changes nothing, and
/// the migration stays open; once the row is fixed, complete goes through.
#[tokio::test(flavor = "multi_thread")]
async fn extract_verification_stops_complete_on_a_mismatch() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE caterers (id serial PRIMARY KEY, name text NOT NULL, city text, zip text, hours json);
         INSERT INTO caterers (name, city, zip, hours) SELECT 'c' || g, 'City ' || g, lpad(g::text, 5, '0'), json_build_object('open', g % 12) FROM generate_series(1, 500) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_addresses.yaml",
        "operations:\n  - extract:\n      table: caterers\n      columns: [city, zip, hours]\n      into: addresses\n      reference_column: caterer_id\n      id_column: id\n",
    )]);
    let file = m.path().join("0001_addresses.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    let before = schema_dump(&db).await;
    complete_refuses_after_writes_around_triggers(
        &db,
        &raw,
        &m.path(),
        "UPDATE caterers SET zip = '77777' WHERE id = 42;
         UPDATE caterers SET hours = '{\"open\": 99}' WHERE id = 43;
         DELETE FROM addresses WHERE caterer_id = 7;",
        &[
            "1 without a row in addresses, 2 with different values",
            "caterers.id = 7: no row in addresses",
            "caterers.id = 42: differs in zip",
            "caterers.id = 43: differs in hours",
        ],
    )
    .await;
    assert_eq!(
        schema_dump(&db).await,
        before,
        "a failed verification changed the schema"
    );
    assert_eq!(migration_status(&raw, "0001_addresses").await, "started");

    raw.batch_execute(
        "INSERT INTO addresses (caterer_id, city, zip, hours) SELECT id, city, zip, hours FROM caterers WHERE id = 7;
         UPDATE addresses SET zip = '77777' WHERE caterer_id = 42;
         UPDATE addresses SET hours = '{\"open\": 99}' WHERE caterer_id = 43;",
    )
    .await
    .unwrap();
    let r = run_ok(&db, &m.path(), &["complete"]).await;
    assert!(
        r.all().contains("verified: every row of caterers"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM addresses a JOIN generate_series(1, 500) g ON a.caterer_id = g AND a.zip = CASE WHEN g = 42 THEN '77777' ELSE lpad(g::text, 5, '0') END").await,
        500
    );
}

#[tokio::test]
async fn copy_verification_compares_checksums_and_names_rows_written_around_the_triggers() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, price int NOT NULL, note text, placed date);
         INSERT INTO orders SELECT g, g % 1000, 'order ' || g, date '2026-01-01' + (g % 300) FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_price.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint\n      down: price::int\n      method: copy\n",
    )]);
    let file = m.path().join("0001_price.yaml");
    let version = scalar_i64(&raw, "SELECT current_setting('server_version_num')::bigint").await;
    // date has no hash function of its own: the checksum hashes it with
    // hash_record_extended (PostgreSQL 14); before, the join compares.
    let cheap = if version >= 140000 {
        "checksums"
    } else {
        "row by row"
    };

    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    // Writes that skip pgshift's triggers: the copy no longer holds the same rows.
    complete_refuses_after_writes_around_triggers(
        &db,
        &raw,
        &m.path(),
        "UPDATE orders SET note = 'changed behind pgshift' WHERE id = 42;
         DELETE FROM orders WHERE id = 7;",
        &[
            "2999 rows in orders, 3000 in _pgshift_copy_orders; 0 without a row in _pgshift_copy_orders, 1 with different values, 1 in _pgshift_copy_orders without a row in orders",
            "orders.id = 42: differs in note",
        ],
    )
    .await;
    assert_eq!(migration_status(&raw, "0001_price").await, "started");

    // Put the copy right by hand, as the hint says: complete passes, the cheap way.
    raw.batch_execute(
        "SET session_replication_role = replica;
         UPDATE _pgshift_copy_orders SET note = 'changed behind pgshift' WHERE id = 42;
         DELETE FROM _pgshift_copy_orders WHERE id = 7;
         SET session_replication_role = origin;",
    )
    .await
    .unwrap();
    let r = run_ok(&db, &m.path(), &["complete"]).await;
    let passed = format!("(2999 rows compared {cheap}, ");
    assert!(r.all().contains(&passed), "{}", r.all());
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM orders WHERE price = id % 1000 AND note = CASE WHEN id = 42 THEN 'changed behind pgshift' ELSE 'order ' || id END").await,
        2999
    );
}

/// The checksum ties each value to its row: two rows' values swapped in the copy keep every
/// column's values the same as a set, and complete must still stop. Types hashed through
/// a conversion (varchar as text, timestamptz as its UTC timestamp) and NULLs included.
#[tokio::test]
async fn copy_verification_catches_values_swapped_between_rows() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, price int NOT NULL, note text, code varchar(20),
                              placed timestamptz NOT NULL DEFAULT now());
         INSERT INTO orders SELECT g, g % 1000, CASE WHEN g % 5 <> 0 THEN 'order ' || g END, 'c' || (g % 7),
                                   timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
           FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_price.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint\n      down: price::int\n      method: copy\n",
    )]);
    let file = m.path().join("0001_price.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    let swap = |column: &str| {
        format!(
            "UPDATE _pgshift_copy_orders c SET {column} = o.{column} FROM orders o
              WHERE (c.id, o.id) IN ((11, 12), (12, 11));"
        )
    };
    for column in ["note", "code", "placed"] {
        complete_refuses_after_writes_around_triggers(
            &db,
            &raw,
            &m.path(),
            &swap(column),
            &[
                "2000 rows in orders, 2000 in _pgshift_copy_orders; 0 without a row in _pgshift_copy_orders, 2 with different values",
                &format!("orders.id = 11: differs in {column}"),
                &format!("orders.id = 12: differs in {column}"),
            ],
        )
        .await;
        // Put back, the copy is right.
        raw.batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE _pgshift_copy_orders c SET {column} = o.{column} FROM orders o
              WHERE c.id = o.id AND c.id IN (11, 12);
             SET session_replication_role = origin;"
        ))
        .await
        .unwrap();
    }
    // Every type here has a hash function of its own: the checksum runs on any version.
    let r = run_ok(&db, &m.path(), &["complete"]).await;
    assert!(
        r.all().contains("(2000 rows compared checksums, "),
        "{}",
        r.all()
    );
}

/// Writes `sql` with pgshift's triggers off (session_replication_role = replica), as a
/// tool writing around them would, then runs complete, which must stop (exit 1) with every
/// one of `expected` in its report.
async fn complete_refuses_after_writes_around_triggers(
    db: &TestDb,
    raw: &tokio_postgres::Client,
    dir: &std::path::Path,
    sql: &str,
    expected: &[&str],
) {
    raw.batch_execute(&format!(
        "SET session_replication_role = replica; {sql} SET session_replication_role = origin;"
    ))
    .await
    .unwrap();
    let r = run(db, dir, &["complete"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    for e in expected {
        assert!(r.stderr.contains(e), "missing {e:?} in:\n{}", r.all());
    }
}

/// The version schema of a migration with `sql` operations is refreshed from the catalog when
/// its step runs: a table and a column the sql made have views, and the migration's own
/// rename is kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_version_schema_after_sql_operations_shows_what_they_made_and_keeps_renames() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders VALUES (1, 'a');",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_mixed.yaml",
        "operations:\n  - rename_column:\n      table: orders\n      from: note\n      to: remark\n  - sql:\n      up: CREATE TABLE audit (id int); ALTER TABLE orders ADD COLUMN seen boolean DEFAULT false\n      down: DROP TABLE audit; ALTER TABLE orders DROP COLUMN seen\n",
    )]);
    let file = m.path().join("0001_mixed.yaml");
    let plan = run_ok(&db, &m.path(), &["plan", file.to_str().unwrap()]).await;
    assert!(
        plan.stdout.contains("made or dropped since"),
        "{}",
        plan.all()
    );
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    let columns = |table: &'static str| {
        let raw = &raw;
        async move {
            raw.query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public_0001_mixed' AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(columns("orders").await, ["id", "remark", "seen"]);
    assert_eq!(columns("audit").await, ["id"]);
    run_ok(&db, &m.path(), &["rollback"]).await;
    assert!(!table_exists(&raw, "public.audit").await);
}

/// A copy of a table whose clients never stop writing, in multi-row transactions: the
/// catch-up ends (in rounds, the rest replayed after the switch with the rows locked as it
/// reads them), no client's transaction fails, and the table after complete holds every
/// write: a user trigger mirrors each write into another table, which must equal it.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_under_writers_that_never_stop_catches_up_and_loses_no_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const ROWS: i64 = 60_000;
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, price int NOT NULL, note text);
         CREATE TABLE orders_mirror (id bigint PRIMARY KEY, price int NOT NULL, note text);
         CREATE FUNCTION mirror() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP <> 'INSERT' THEN DELETE FROM orders_mirror WHERE id = OLD.id; END IF;
           IF TG_OP <> 'DELETE' THEN INSERT INTO orders_mirror VALUES (NEW.id, NEW.price, NEW.note); END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION mirror();
         INSERT INTO orders SELECT g, g % 1000, 'order ' || g FROM generate_series(1, {ROWS}) g;
         ANALYZE orders;"
    ))
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_price.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n",
    )]);
    let file = m.path().join("0001_price.yaml");
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let client = db.client().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut transactions = 0u64;
            let mut new_id = ROWS + 1 + w as i64 * 10_000_000;
            while !stop.load(Ordering::Relaxed) {
                let a = (next() % ROWS as u64) as i64 + 1;
                let b = (next() % ROWS as u64) as i64 + 1;
                let (lo, hi) = (a.min(b), a.max(b));
                let sql = match next() % 4 {
                    0 => format!("INSERT INTO orders VALUES ({new_id}, 1, 'new')"),
                    1 => format!("DELETE FROM orders WHERE id = {a}"),
                    _ => format!(
                        "BEGIN; UPDATE orders SET price = price + 1 WHERE id = {lo};
                         UPDATE orders SET note = 'w{w}' WHERE id = {hi}; COMMIT"
                    ),
                };
                new_id += 1;
                client
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {sql}: {e:?}"));
                transactions += 1;
            }
            transactions
        }));
    }
    let r = run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert!(
        r.all().contains("replay the rest of the log"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM pgshift._pgshift_log_orders").await,
        0,
        "the log is empty after start, and stays so"
    );
    run_ok(&db, &m.path(), &["complete"]).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        total += w.await.expect("a writer failed");
    }
    assert!(total > 100, "{total} transactions");
    assert_eq!(
        scalar_text(&raw, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price'").await.as_deref(),
        Some("bigint")
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM ((SELECT id, price, note FROM orders EXCEPT SELECT id, price, note FROM orders_mirror)
                                   UNION ALL (SELECT id, price, note FROM orders_mirror EXCEPT SELECT id, price, note FROM orders)) d"
        )
        .await,
        0
    );
}

//! A migration changes only what it says: on a production-shaped table (grants, row-level
//! security, triggers, a rule, a publication, storage parameters, comments, statistics,
//! views and a materialized view over it, foreign keys pointing in), every operation that
//! replaces the table or a column leaves everything else as it was, and the application's
//! roles read and write exactly as before.

mod common;

use common::*;
use pgshift_testkit::production::{self, Roles};
use pgshift_testkit::TestDb;

const ROWS: i64 = 3000;

/// The lines of a description that differ between `before` and `after`, each side.
fn differences(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let gone = before
        .iter()
        .filter(|l| !after.contains(l))
        .cloned()
        .collect();
    let new = after
        .iter()
        .filter(|l| !before.contains(l))
        .cloned()
        .collect();
    (gone, new)
}

/// Asserts that the descriptions `before` and `after` differ only in lines `explained`.
fn only_explained(before: &[String], after: &[String], explained: impl Fn(&str) -> bool) {
    let (gone, new) = differences(before, after);
    let unexplained = |lines: &[String]| -> Vec<String> {
        lines.iter().filter(|l| !explained(l)).cloned().collect()
    };
    assert!(
        unexplained(&gone).is_empty() && unexplained(&new).is_empty(),
        "changed beyond what the migration says:\nbefore only:\n{}\nafter only:\n{}",
        unexplained(&gone).join("\n"),
        unexplained(&new).join("\n")
    );
}

/// Whether a description line is about one of `changed`: a column (`relation.column`), or
/// an object named with its kind (`constraint name`).
fn about(line: &str, changed: &[&str]) -> bool {
    changed
        .iter()
        .any(|c| line.starts_with(&format!("column {c} ")) || line.starts_with(&format!("{c} ")))
}

async fn as_role(db: &TestDb, role: &str, tenant: Option<i32>) -> tokio_postgres::Client {
    let c = db.client().await;
    let mut sql = format!("SET ROLE {}", pgshift::quote::ident(role));
    if let Some(t) = tenant {
        sql.push_str(&format!("; SET app.tenant = '{t}'"));
    }
    c.batch_execute(&sql).await.unwrap();
    c
}

/// Whether the version schema's views read their tables under the tables' row-level
/// security (`security_invoker`, PostgreSQL 15 and later). Before, such a view would read
/// with its owner's rights, so pgshift gives the view of a table with row-level security no
/// grants (docs/fidelity.md).
async fn version_views_read_under_row_security(c: &tokio_postgres::Client) -> bool {
    scalar_i64(c, "SELECT current_setting('server_version_num')::bigint").await >= 150000
}

/// Before PostgreSQL 15: neither the application role nor the read-only role may read
/// `table` through the new version, so no policy is read around.
async fn withheld(db: &TestDb, roles: &Roles, version: &str, table: &str) {
    for role in [&roles.app, &roles.readonly] {
        let c = as_role(db, role, Some(1)).await;
        let e = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    pgshift::quote::ident(version),
                    pgshift::quote::ident(table)
                ),
                &[],
            )
            .await
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_owned()));
        assert_eq!(
            e.as_deref(),
            Some("42501"),
            "{role} reading {version}.{table}"
        );
    }
}

/// What the roles see and may do through a version (`search_path`), while a migration is
/// open: the same rows, the same refusals, through the old version and the new.
async fn access(db: &TestDb, roles: &Roles, search_path: &str, id: i64) -> Vec<String> {
    let mut out = Vec::new();
    let path = format!("SET search_path = {}", pgshift::quote::ident(search_path));
    let app = as_role(db, &roles.app, Some(1)).await;
    app.batch_execute(&path).await.unwrap();
    out.push(format!(
        "app reads {} rows",
        scalar_i64(&app, "SELECT count(*) FROM orders").await
    ));
    let refused = app
        .batch_execute(&format!(
            "INSERT INTO orders (id, tenant, price) VALUES ({id}, 2, 5)"
        ))
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_owned()));
    out.push(format!("app writing another tenant's row: {refused:?}"));
    let own = app
        .batch_execute(&format!(
            "INSERT INTO orders (id, tenant, price) VALUES ({id}, 1, 5); DELETE FROM orders WHERE id = {id}"
        ))
        .await
        .err()
        .map(|e| format!("{e:?}"));
    out.push(format!("app writing its own tenant's row: {own:?}"));
    let ro = as_role(db, &roles.readonly, None).await;
    ro.batch_execute(&path).await.unwrap();
    out.push(format!(
        "readonly reads {} rows",
        scalar_i64(&ro, "SELECT count(*) FROM orders").await
    ));
    out
}

/// What the roles see and may do, and what the objects over the table return.
async fn behaviour(db: &TestDb, roles: &Roles) -> Vec<String> {
    let mut out = Vec::new();
    let app = as_role(db, &roles.app, Some(1)).await;
    out.push(format!(
        "app reads {} rows",
        scalar_i64(&app, "SELECT count(*) FROM orders").await
    ));
    let refused = app
        .batch_execute("INSERT INTO orders (id, tenant, price) VALUES (900001, 2, 5)")
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_owned()));
    out.push(format!("app writing another tenant's row: {refused:?}"));
    app.batch_execute("INSERT INTO orders (id, tenant, price) VALUES (900002, 1, 5)")
        .await
        .unwrap();
    let ro = as_role(db, &roles.readonly, None).await;
    out.push(format!(
        "readonly reads {} rows",
        scalar_i64(&ro, "SELECT count(*) FROM orders").await
    ));
    let denied = ro
        .batch_execute("UPDATE orders SET price = 1 WHERE id = 1")
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_owned()));
    out.push(format!("readonly updating price: {denied:?}"));
    let raw = db.client().await;
    raw.batch_execute("UPDATE orders SET note = 'touched', updated_at = 'epoch' WHERE id = 3")
        .await
        .unwrap();
    out.push(format!(
        "the update trigger fired: {}",
        scalar_i64(
            &raw,
            "SELECT count(*) FROM orders WHERE id = 3 AND updated_at > 'epoch'"
        )
        .await
            == 1
    ));
    out.push(format!(
        "the view agrees with the table: {}",
        scalar_i64(
            &raw,
            "SELECT count(*) FROM (SELECT tenant, sum(price) AS total, count(*) AS n FROM orders GROUP BY tenant
                                   EXCEPT SELECT tenant, total, n FROM order_totals) d"
        )
        .await
            == 0
    ));
    raw.batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY order_stats")
        .await
        .unwrap();
    out.push(format!(
        "the materialized view agrees with the table: {}",
        scalar_i64(
            &raw,
            "SELECT count(*) FROM (SELECT tenant, count(*) AS n, max(price) AS top FROM orders GROUP BY tenant
                                   EXCEPT SELECT tenant, n, top FROM order_stats) d"
        )
        .await
            == 0
    ));
    raw.batch_execute("DELETE FROM orders WHERE id IN (900001, 900002)")
        .await
        .unwrap();
    out
}

/// Every way of running a migration on the fixture.
const RUNS: [Run; 4] = [
    Run::Complete,
    Run::Rollback,
    Run::OwnerCompletes,
    Run::OwnerRollsBack,
];

/// Who runs pgshift, and how the migration ends.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Run {
    /// A superuser; started and completed.
    Complete,
    /// A superuser; started and rolled back.
    Rollback,
    /// The tables' owner, not a superuser (the policy not forced on it); completed.
    OwnerCompletes,
    /// The tables' owner; rolled back.
    OwnerRollsBack,
}

/// The production-shaped fixture on a fresh database, and who runs pgshift on it.
struct Fixture {
    admin: TestDb,
    raw: tokio_postgres::Client,
    roles: Roles,
    /// The database as pgshift connects to it for `run`: as the superuser, or as the
    /// tables' owner.
    db: TestDb,
}

impl Fixture {
    /// The fixture, then `extra` (SQL run as the superuser, `{ro}` the read-only role).
    async fn new(run: Run, extra: &str) -> Fixture {
        let admin = TestDb::new().await;
        let raw = admin.client().await;
        let owned = matches!(run, Run::OwnerCompletes | Run::OwnerRollsBack);
        let roles = production::create(&raw, &admin.name, ROWS, owned).await;
        raw.batch_execute(
            &extra.replace("{ro}", &pgshift::quote::ident(&roles.readonly).to_string()),
        )
        .await
        .unwrap();
        let url = if owned {
            // A forced policy would hold the owner to it: refused (see the test below).
            raw.batch_execute("ALTER TABLE orders NO FORCE ROW LEVEL SECURITY")
                .await
                .unwrap();
            url_as(&admin, &roles.owner)
        } else {
            admin.url.clone()
        };
        let db = TestDb {
            name: admin.name.clone(),
            url,
        };
        Fixture {
            admin,
            raw,
            roles,
            db,
        }
    }
}

/// Runs `migration` on the fixture through start and complete, and checks that the table
/// and everything over it are as before except `changed` (columns whose type may differ),
/// and, when `keeps_order`, the order of the columns. Each way of running it in `runs`, on a
/// fresh database each; rolled back, everything is as before, with no exception.
async fn carries_everything(
    migration: &str,
    changed: &[&str],
    keeps_order: bool,
    expect: &[(&str, &str)],
) {
    for run in RUNS {
        carries_everything_as(run, migration, changed, keeps_order, expect).await;
    }
}

async fn carries_everything_as(
    run: Run,
    migration: &str,
    changed: &[&str],
    keeps_order: bool,
    expect: &[(&str, &str)],
) {
    let Fixture {
        admin,
        raw,
        roles,
        db,
    } = Fixture::new(run, "").await;
    let before = production::describe(&raw, "public.orders").await;
    let acts_before = behaviour(&admin, &roles).await;
    let access_before = access(&admin, &roles, "public", 800001).await;
    assert!(
        access_before[0] == format!("app reads {} rows", ROWS / 3)
            && access_before[1] == "app writing another tenant's row: Some(\"42501\")"
            && access_before[3] == format!("readonly reads {ROWS} rows"),
        "the fixture's policies: {access_before:?}"
    );
    let m = Migrations::new(&[("0001_change.yaml", migration)]);
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0001_change.yaml").to_str().unwrap()],
    )
    .await;
    // While it is open, each role has the same rights and sees the same rows through
    // either version.
    let version = run_ok(&db, &m.path(), &["latest", "schema"])
        .await
        .stdout
        .trim()
        .to_owned();
    assert_eq!(
        access(&admin, &roles, "public", 800002).await,
        access_before,
        "through the old version"
    );
    if version_views_read_under_row_security(&raw).await {
        assert_eq!(
            access(&admin, &roles, &version, 800003).await,
            access_before,
            "through the new version {version}"
        );
    } else {
        withheld(&admin, &roles, &version, "orders").await;
    }
    if matches!(run, Run::Rollback | Run::OwnerRollsBack) {
        run_ok(&db, &m.path(), &["rollback"]).await;
        let after = production::describe(&raw, "public.orders").await;
        only_explained(&before, &after, |_| false);
        assert_eq!(behaviour(&admin, &roles).await, acts_before);
        return;
    }
    run_ok(&db, &m.path(), &["complete"]).await;
    let after = production::describe(&raw, "public.orders").await;
    for (column, ty) in expect {
        let line = format!("column {column} {ty} ");
        assert!(
            after.iter().any(|l| l.starts_with(&line)),
            "the migration did not make {column} {ty}: {after:#?}"
        );
    }
    only_explained(&before, &after, |l| {
        about(l, changed) || (!keeps_order && l.starts_with("column order of orders:"))
    });
    assert_eq!(behaviour(&admin, &roles).await, acts_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_the_table_carries_everything_that_hangs_on_it() {
    carries_everything(
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      method: copy\n",
        &["orders.price", "order_totals.total", "order_stats.top", "big_orders.price"],
        true,
        &[("orders.price", "bigint"), ("order_stats.top", "bigint")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_changed_in_place_carries_everything_that_hangs_on_it() {
    carries_everything(
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n",
        &["orders.price", "order_totals.total", "order_stats.top", "big_orders.price"],
        false,
        &[("orders.price", "bigint"), ("order_stats.top", "bigint")],
    )
    .await;
}

/// `partition_table` by copy on the production-shaped table (its foreign key to itself
/// dropped first: refused, see docs/partitions.md; its publication set to publish via the
/// partition root): as the superuser and as the table's owner, completed or rolled back,
/// everything that hangs on `orders` is as before, the table now partitioned by hash of its
/// key, and each role reads and writes what it did.
#[tokio::test(flavor = "multi_thread")]
async fn partition_table_by_copy_carries_everything_on_the_production_table() {
    partition_table_carries_everything(
        "operations:
  - partition_table:
      table: orders
      by: HASH (id)
      partitions:
        - name: orders_p0
          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 0)
        - name: orders_p1
          bound: FOR VALUES WITH (MODULUS 2, REMAINDER 1)
",
    )
    .await;
}

/// The same by attach: the table becomes `orders_p0`, an empty `orders_p1` beside it.
#[tokio::test(flavor = "multi_thread")]
async fn partition_table_by_attach_carries_everything_on_the_production_table() {
    partition_table_carries_everything(
        "operations:
  - partition_table:
      table: orders
      by: RANGE (id)
      existing:
        name: orders_p0
        bound: FOR VALUES FROM (MINVALUE) TO (100000000)
      partitions:
        - name: orders_p1
          bound: FOR VALUES FROM (100000000) TO (MAXVALUE)
",
    )
    .await;
}

async fn partition_table_carries_everything(migration: &str) {
    for run in RUNS {
        let Fixture {
            admin,
            raw,
            roles,
            db,
        } = Fixture::new(
            run,
            "ALTER TABLE orders DROP COLUMN parent_id; ALTER PUBLICATION cdc SET (publish_via_partition_root = true);",
        )
        .await;
        let before = production::describe(&raw, "public.orders").await;
        let acts_before = behaviour(&admin, &roles).await;
        let access_before = access(&admin, &roles, "public", 800001).await;
        let m = Migrations::new(&[("0001_part.yaml", migration)]);
        run_ok(
            &db,
            &m.path(),
            &["start", m.path().join("0001_part.yaml").to_str().unwrap()],
        )
        .await;
        assert_eq!(
            access(&admin, &roles, "public", 800002).await,
            access_before,
            "{run:?}: while open"
        );
        if matches!(run, Run::Rollback | Run::OwnerRollsBack) {
            run_ok(&db, &m.path(), &["rollback"]).await;
        } else {
            run_ok(&db, &m.path(), &["complete"]).await;
            assert_eq!(
                scalar_text(
                    &raw,
                    "SELECT relkind::text FROM pg_class WHERE oid = 'orders'::regclass"
                )
                .await
                .as_deref(),
                Some("p")
            );
        }
        let after = production::describe(&raw, "public.orders").await;
        if matches!(run, Run::Rollback | Run::OwnerRollsBack) {
            only_explained(&before, &after, |_| false);
        } else {
            // Partitioned: its indexes are the partitioned table's (ON ONLY, each partition's
            // attached), and its storage parameters are on its partitions (below).
            only_explained(&before, &after, |l| {
                let as_before = l.replace(" ON ONLY public.orders ", " ON public.orders ");
                let as_after = l.replace(" ON public.orders ", " ON ONLY public.orders ");
                (l.starts_with("index ")
                    && (before.contains(&as_before) || after.contains(&as_after)))
                    || l.starts_with("relation orders kind ")
            });
            assert_eq!(
                scalar_text(
                    &raw,
                    "SELECT string_agg(c.relname || ' ' || array_to_string(c.reloptions, ',') || ' ' || array_to_string(t.reloptions, ',') || ' ' || pg_get_userbyid(c.relowner) || ' ' || c.relreplident::text, '; ' ORDER BY c.relname)
                     FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname IN ('orders_p0', 'orders_p1')"
                )
                .await,
                Some(
                    ["orders_p0", "orders_p1"]
                        .map(|p| format!("{p} fillfactor=90,autovacuum_vacuum_scale_factor=0.02 autovacuum_enabled=false {} i", if matches!(run, Run::OwnerCompletes) { roles.owner.as_str() } else { "postgres" }))
                        .join("; ")
                ),
                "{run:?}: the partitions' storage parameters, owner and replica identity"
            );
        }
        assert_eq!(behaviour(&admin, &roles).await, acts_before, "{run:?}");
        assert_eq!(
            access(&admin, &roles, "public", 800003).await,
            access_before,
            "{run:?}: after"
        );
    }
}

/// `db`'s URL for `role` instead of the superuser.
fn url_as(db: &TestDb, role: &str) -> String {
    db.url.replacen("postgres@", &format!("{role}@"), 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tables_owner_without_superuser_is_refused_a_forced_policy_then_carries_everything() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    let roles = production::create(&raw, &db.name, ROWS, true).await;
    let owner = TestDb {
        name: db.name.clone(),
        url: url_as(&db, &roles.owner),
    };
    let m = Migrations::new(&[(
        "0001_change.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      method: copy\n",
    )]);
    let file = m.path().join("0001_change.yaml");
    // FORCE ROW LEVEL SECURITY holds the owner to the policies: pgshift would copy only
    // the rows they show it (none: no permissive policy is for the owner). Refused before
    // anything changes.
    let r = run(&owner, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("forces row-level security on its owner")
            && r.stderr.contains("NO FORCE ROW LEVEL SECURITY"),
        "{}",
        r.all()
    );
    assert!(!table_exists(&raw, "pgshift.migrations").await);
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM orders").await, ROWS);

    raw.batch_execute("ALTER TABLE orders NO FORCE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let before = production::describe(&raw, "public.orders").await;
    let acts_before = behaviour(&db, &roles).await;
    run_ok(&owner, &m.path(), &["start", file.to_str().unwrap()]).await;
    run_ok(&owner, &m.path(), &["complete"]).await;
    let after = production::describe(&raw, "public.orders").await;
    let (gone, new) = differences(&before, &after);
    let changed = [
        "orders.price",
        "order_totals.total",
        "order_stats.top",
        "big_orders.price",
    ];
    let unexplained: Vec<&String> = gone
        .iter()
        .chain(&new)
        .filter(|l| !about(l, &changed))
        .collect();
    assert!(
        unexplained.is_empty(),
        "changed beyond the migration: {unexplained:#?}"
    );
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("relation orders kind r owner ")
                && l.contains(&format!("owner {} ", roles.owner))),
        "{after:#?}"
    );
    assert_eq!(behaviour(&db, &roles).await, acts_before);
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM orders").await, ROWS);
}

#[tokio::test(flavor = "multi_thread")]
async fn alter_primary_key_carries_everything_on_the_key_and_the_columns_that_reference_it() {
    carries_everything(
        "operations:\n  - alter_primary_key:\n      table: orders\n      type: bigint\n",
        &["orders.id", "orders.parent_id", "big_orders.id"],
        false,
        &[
            ("orders.id", "bigint"),
            ("orders.parent_id", "bigint"),
            ("big_orders.id", "bigint"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_constraint_over_two_columns_with_up_carries_everything_on_them() {
    carries_everything(
        "operations:\n  - create_constraint:\n      type: check\n      table: orders\n      name: orders_rate_price\n      columns: [price, rate]\n      check: rate IS NULL OR price >= rate\n      up:\n        price: price\n        rate: CASE WHEN rate > price THEN price ELSE rate END\n      down:\n        price: price\n        rate: rate\n",
        &[
            "orders.price",
            "orders.rate",
            "order_totals.total",
            "order_stats.top",
            "big_orders.price",
            "big_orders.rate",
            "constraint orders_rate_price",
        ],
        false,
        &[("orders.price", "integer"), ("orders.rate", "numeric(4,2)")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_change_without_a_rewrite_makes_the_views_over_the_column_again() {
    carries_everything(
        "operations:\n  - alter_column:\n      table: orders\n      column: code\n      type: varchar(40)\n  - alter_column:\n      table: orders\n      column: rate\n      type: numeric(6,2)\n",
        &["orders.code", "big_orders.code", "orders.rate", "big_orders.rate"],
        true,
        &[
            ("orders.code", "character varying(40)"),
            ("big_orders.code", "character varying(40)"),
            ("orders.rate", "numeric(6,2)"),
        ],
    )
    .await;
}

/// Asserts that `plan` and `start` of `file` both exit 2 saying each of `said`.
async fn refused_by_plan_and_start(db: &TestDb, m: &Migrations, file: &str, said: &[&str]) {
    for command in ["plan", "start"] {
        let r = run(
            db,
            &m.path(),
            &[command, m.path().join(file).to_str().unwrap()],
        )
        .await;
        assert_eq!(r.code, 2, "{command}: {}", r.all());
        for s in said {
            assert!(r.stderr.contains(s), "{command}: no {s}: {}", r.all());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_copy_cannot_carry_is_refused_before_anything_changes() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, 100, false).await;
    raw.batch_execute(
        "CREATE FUNCTION recent_orders() RETURNS SETOF orders LANGUAGE sql AS 'SELECT * FROM orders ORDER BY id DESC LIMIT 10'",
    )
    .await
    .unwrap();
    let before = production::describe(&raw, "public.orders").await;
    let m = Migrations::new(&[(
        "0001_change.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      method: copy\n",
    )]);
    refused_by_plan_and_start(
        &db,
        &m,
        "0001_change.yaml",
        &[
            "function recent_orders() uses the row type of orders",
            "`method: in_place`",
        ],
    )
    .await;
    assert!(!table_exists(&raw, "pgshift.migrations").await);
    assert_eq!(production::describe(&raw, "public.orders").await, before);
    // In place, the table stays: the function keeps working.
    m.write(
        "0001_change.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n",
    );
    // Without `method`, pgshift takes that way itself and says why.
    let planned = run_ok(
        &db,
        &m.path(),
        &["plan", m.path().join("0001_change.yaml").to_str().unwrap()],
    )
    .await;
    assert!(
        planned.stdout.contains("operation 1 (alter_column orders.price): in place: ")
            && planned.stdout.contains(
                "not a copy of the table, because function recent_orders() uses the row type of orders"
            ),
        "{}",
        planned.stdout
    );
    run_ok(&db, &m.path(), &["migrate"]).await;
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM recent_orders()").await,
        10
    );
}

/// The rows of `orders` as text, in key order, to compare two databases.
async fn rows_of(c: &tokio_postgres::Client) -> String {
    scalar_text(
        c,
        "SELECT md5(coalesce(string_agg(format('%s|%s|%s|%s', id, tenant, price, note), ',' ORDER BY id), '')) FROM orders",
    )
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_in_a_publication_keeps_feeding_its_subscriber_after_a_copy() {
    let Ok(cluster) = pgshift_testkit::start_another_cluster() else {
        panic!("a second cluster for the subscriber could not start");
    };
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, 500, false).await;
    let publisher = pgshift_testkit::cluster();

    let sub_url = cluster.url("postgres");
    let sub = pgshift_testkit::connect_url(&sub_url).await;
    sub.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, tenant int NOT NULL, customer_id bigint, price int NOT NULL,
                              note text, code varchar(20), rate numeric(4,2), updated_at timestamptz, parent_id int);
         CREATE UNIQUE INDEX orders_id_tenant ON orders (id, tenant);
         ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_id_tenant;",
    )
    .await
    .unwrap();
    sub.batch_execute(&format!(
        "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port={} dbname={} user=postgres' PUBLICATION cdc",
        publisher.port, db.name
    ))
    .await
    .unwrap();
    let caught_up = |want: String| {
        let sub = &sub;
        async move {
            wait_until(
                "the subscriber to catch up",
                std::time::Duration::from_secs(60),
                || {
                    let want = want.clone();
                    async move { rows_of(sub).await == want }
                },
            )
            .await;
        }
    };
    caught_up(rows_of(&raw).await).await;

    let m = start_copy_of_orders(&db).await;
    raw.batch_execute(
        "INSERT INTO orders (id, tenant, price, note) VALUES (10001, 1, 7, 'while open');
         UPDATE orders SET note = 'changed while open' WHERE id = 5;
         DELETE FROM orders WHERE id = 6;",
    )
    .await
    .unwrap();
    run_ok(&db, &m.path(), &["complete"]).await;
    raw.batch_execute(
        "INSERT INTO orders (id, tenant, price, note) VALUES (10002, 2, 8, 'after complete');
         UPDATE orders SET note = 'changed after' WHERE id = 7;
         DELETE FROM orders WHERE id = 8;",
    )
    .await
    .unwrap();
    // Nothing missing, nothing twice: the subscriber ends equal to the publisher.
    caught_up(rows_of(&raw).await).await;
    assert_eq!(
        scalar_i64(&sub, "SELECT count(*) FROM orders WHERE id IN (10001, 10002, 5, 7) AND note <> 'order 5' AND note <> 'order 7'").await,
        4
    );
    sub.batch_execute("DROP SUBSCRIPTION s").await.unwrap();
}

/// Whether the session that evaluates it holds ACCESS EXCLUSIVE on `orders` (the swap's
/// lock): a materialized view that calls it records where it was built.
const UNDER_THE_SWAP: &str = "CREATE FUNCTION under_the_swap() RETURNS boolean LANGUAGE sql VOLATILE AS
    $$SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND granted
                     AND mode = 'AccessExclusiveLock' AND relation = to_regclass('public.orders'))$$";

#[tokio::test(flavor = "multi_thread")]
async fn a_materialized_view_over_a_copied_table_is_built_on_the_copy_before_the_swap() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, 300, false).await;
    raw.batch_execute(UNDER_THE_SWAP).await.unwrap();
    raw.batch_execute(
        "CREATE MATERIALIZED VIEW direct AS SELECT tenant, sum(price) AS total, public.under_the_swap() AS locked FROM orders GROUP BY tenant;
         CREATE UNIQUE INDEX direct_tenant ON direct (tenant);
         CREATE MATERIALIZED VIEW nested AS SELECT tenant, total, public.under_the_swap() AS locked FROM order_totals;
         -- One whose build fails on the copy (it insists on the swap's lock): left to the swap.
         CREATE FUNCTION only_under_the_swap() RETURNS boolean LANGUAGE plpgsql VOLATILE AS
             $$BEGIN IF NOT public.under_the_swap() AND EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE '\\_pgshift\\_copy\\_%') THEN
                 RAISE EXCEPTION 'not under the swap'; END IF; RETURN true; END$$;
         CREATE MATERIALIZED VIEW strict AS SELECT tenant, public.only_under_the_swap() AS locked FROM orders GROUP BY tenant;
         CREATE INDEX strict_tenant ON strict (tenant);",
    )
    .await
    .unwrap();
    let before = production::describe(&raw, "public.orders").await;
    let m = start_copy_of_orders(&db).await;
    // A leftover of a run that built it and stopped before its swap: dropped and built again.
    raw.batch_execute("CREATE MATERIALIZED VIEW _pgshift_mv_direct AS SELECT 1 AS x")
        .await
        .unwrap();
    run_ok(&db, &m.path(), &["complete"]).await;
    // Built on the copy before the swap took its lock; the one over another view is made
    // inside the swap, as plain views are.
    assert_eq!(
        scalar_text(
            &raw,
            "SELECT string_agg(DISTINCT locked::text, ',') FROM direct"
        )
        .await,
        Some("false".to_owned())
    );
    assert_eq!(
        scalar_text(
            &raw,
            "SELECT string_agg(DISTINCT locked::text, ',') FROM nested"
        )
        .await,
        Some("true".to_owned())
    );
    assert_eq!(
        scalar_text(
            &raw,
            "SELECT string_agg(DISTINCT locked::text, ',') FROM strict"
        )
        .await,
        Some("true".to_owned()),
        "a view whose build fails on the copy is made in the swap"
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM (SELECT tenant, sum(price) FROM orders GROUP BY tenant EXCEPT SELECT tenant, total FROM direct) d"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgshift\\_mv%'"
        )
        .await,
        0,
        "nothing built for the swap is left"
    );
    let after = production::describe(&raw, "public.orders").await;
    let changed = [
        "orders.price",
        "order_totals.total",
        "order_stats.top",
        "big_orders.price",
        "direct.total",
        "nested.total",
    ];
    assert!(
        after.iter().any(|l| l.contains("strict_tenant")),
        "the index of the view made in the swap: {after:#?}"
    );
    let (gone, new) = differences(&before, &after);
    let unexplained: Vec<&String> = gone
        .iter()
        .chain(&new)
        .filter(|l| !about(l, &changed))
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_drops_a_materialized_view_left_built_on_the_copy() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, 100, false).await;
    let before = production::describe(&raw, "public.orders").await;
    let m = start_copy_of_orders(&db).await;
    // What a run killed between building the views on the copy and its swap leaves.
    let copy = scalar_text(
        &raw,
        "SELECT relname::text FROM pg_class WHERE relname LIKE '\\_pgshift\\_copy\\_%' AND relkind = 'r'",
    )
    .await
    .expect("the copy");
    raw.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW _pgshift_mv_order_stats AS SELECT tenant, count(*) AS n FROM {} GROUP BY tenant",
        pgshift::quote::ident(&copy)
    ))
    .await
    .unwrap();
    run_ok(&db, &m.path(), &["rollback"]).await;
    assert!(!table_exists(&raw, &format!("public.{copy}")).await);
    assert!(!table_exists(&raw, "public._pgshift_mv_order_stats").await);
    assert_eq!(production::describe(&raw, "public.orders").await, before);
}

/// Starts `alter_column` of `orders.price` to bigint by `method: copy`.
async fn start_copy_of_orders(db: &TestDb) -> Migrations {
    let m = Migrations::new(&[(
        "0001_change.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      method: copy\n",
    )]);
    run_ok(
        db,
        &m.path(),
        &["start", m.path().join("0001_change.yaml").to_str().unwrap()],
    )
    .await;
    m
}

/// `method: copy` of `orders` (referenced by `order_items` and by itself) while clients
/// insert orders with a parent, insert their items, update and delete, each write mirrored
/// into a reference table in the same transaction: completed, the foreign keys pointed at
/// the new table and validated, every row equal to the reference, no client error.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_a_table_that_foreign_keys_reference_under_client_writes() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, ROWS, false).await;
    raw.batch_execute(
        "CREATE TABLE reference AS SELECT id, tenant, price::bigint AS price, note, parent_id FROM orders;
         CREATE TABLE reference_items AS SELECT id, order_id FROM order_items;",
    )
    .await
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (stop, client) = (stop.clone(), db.client().await);
        writers.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = 100_000 + w * 1_000_000 + n;
                let old = 1 + (n * 7 + w) % ROWS;
                let sql = format!(
                    "BEGIN;
                     INSERT INTO orders (id, tenant, price, note, parent_id) VALUES ({id}, 1, 5, 'new', {old});
                     INSERT INTO reference VALUES ({id}, 1, 5, 'new', {old});
                     INSERT INTO order_items VALUES ({id}, {id}, 1);
                     INSERT INTO reference_items VALUES ({id}, {id});
                     UPDATE orders SET price = price + 1, note = 'updated' WHERE id = {old};
                     UPDATE reference SET price = price + 1, note = 'updated' WHERE id = {old};
                     COMMIT;"
                );
                client.batch_execute(&sql).await?;
                if n % 3 == 2 {
                    // An order and, by ON DELETE CASCADE, its items.
                    let gone = id - 1;
                    client
                        .batch_execute(&format!(
                            "BEGIN; DELETE FROM orders WHERE id = {gone};
                             DELETE FROM reference WHERE id = {gone}; DELETE FROM reference_items WHERE order_id = {gone}; COMMIT;"
                        ))
                        .await?;
                }
                n += 1;
            }
            Ok::<i64, tokio_postgres::Error>(n)
        }));
    }
    let m = start_copy_of_orders(&db).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap().expect("a client statement failed");
    }
    assert!(writes > 20, "the writers barely ran: {writes}");
    // Pointed at the new table, validated.
    assert_eq!(
        scalar_text(
            &raw,
            "SELECT string_agg(conrelid::regclass || ':' || conname || ':' || convalidated, ',' ORDER BY conname)
             FROM pg_constraint WHERE contype = 'f' AND confrelid = 'orders'::regclass",
        )
        .await,
        Some("order_items:order_items_order_id_fkey:true,orders:orders_parent_id_fkey:true".to_owned())
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM ((SELECT id, tenant, price, note, parent_id FROM orders EXCEPT SELECT * FROM reference)
                                   UNION ALL (SELECT * FROM reference EXCEPT SELECT id, tenant, price, note, parent_id FROM orders)) d",
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM ((SELECT id, order_id FROM order_items EXCEPT SELECT * FROM reference_items)
                                   UNION ALL (SELECT * FROM reference_items EXCEPT SELECT id, order_id FROM order_items)) d",
        )
        .await,
        0
    );
    assert_eq!(
        scalar_text(&raw, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price'").await,
        Some("bigint".to_owned())
    );
}

/// The sample-schema case: widening `film.rental_rate` (numeric(4,2) to (6,2), no rewrite)
/// and `film.length` (smallint to integer, a rewrite) under the views and the materialized
/// view that use them, nested views and a partitioned table beside them.
#[tokio::test(flavor = "multi_thread")]
async fn the_sample_schemas_film_columns_widen_under_their_views() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE film (film_id serial PRIMARY KEY, title text NOT NULL, rental_rate numeric(4,2) NOT NULL DEFAULT 4.99,
                            length smallint, rating text);
         INSERT INTO film (title, rental_rate, length, rating)
             SELECT 'film ' || g, (g % 5) + 0.99, 60 + g % 120, (ARRAY['G','PG','R'])[1 + g % 3] FROM generate_series(1, 1000) g;
         CREATE TABLE customer (customer_id serial PRIMARY KEY, name text);
         INSERT INTO customer (name) SELECT 'c' || g FROM generate_series(1, 50) g;
         CREATE TABLE rental (rental_id serial PRIMARY KEY, film_id int REFERENCES film, customer_id int REFERENCES customer);
         INSERT INTO rental (film_id, customer_id) SELECT 1 + g % 1000, 1 + g % 50 FROM generate_series(1, 3000) g;
         CREATE TABLE payment (payment_id int, customer_id int, amount numeric(5,2), paid date) PARTITION BY RANGE (paid);
         CREATE TABLE payment_2026 PARTITION OF payment FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE VIEW film_list AS SELECT film_id, title, rental_rate, length, rating FROM film;
         CREATE VIEW long_films AS SELECT film_id, title, length FROM film WHERE length > 120;
         CREATE VIEW long_film_count AS SELECT count(*) AS n FROM long_films;
         CREATE VIEW rentals_by_rate AS SELECT f.rental_rate, count(*) AS n FROM rental r JOIN film f USING (film_id) GROUP BY f.rental_rate;
         CREATE VIEW customer_list AS SELECT customer_id, name FROM customer;
         CREATE MATERIALIZED VIEW rate_summary AS SELECT rating, avg(rental_rate) AS rate, max(length) AS longest FROM film GROUP BY rating;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_widen.yaml",
        "operations:\n  - alter_column:\n      table: film\n      column: rental_rate\n      type: numeric(6,2)\n  - alter_column:\n      table: film\n      column: length\n      type: integer\n",
    )]);
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0001_widen.yaml").to_str().unwrap()],
    )
    .await;
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_text(
            &raw,
            "SELECT string_agg(attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attrelid::regclass::text, attname)
             FROM pg_attribute WHERE attname IN ('rental_rate', 'length', 'longest', 'rate')
               AND attrelid IN ('film'::regclass, 'film_list'::regclass, 'long_films'::regclass, 'rentals_by_rate'::regclass, 'rate_summary'::regclass)",
        )
        .await,
        Some("film.length integer, film.rental_rate numeric(6,2), film_list.length integer, film_list.rental_rate numeric(6,2), long_films.length integer, rate_summary.longest integer, rate_summary.rate numeric, rentals_by_rate.rental_rate numeric(6,2)".to_owned())
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM film_list").await,
        1000
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT n FROM long_film_count").await,
        scalar_i64(&raw, "SELECT count(*) FROM film WHERE length > 120").await
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT sum(n)::bigint FROM rentals_by_rate").await,
        3000
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM rate_summary").await,
        3
    );
}

/// What the roles see of and may do to the extracted `gift` column, through `path`: the app
/// (tenant 1) its tenant's gifts only, the read-only role every gift; the app's order with
/// a gift written through the old version, and its refusal for another tenant's order.
async fn gift_access(db: &TestDb, roles: &Roles, path: &str, table: &str, id: i64) -> Vec<String> {
    let mut out = Vec::new();
    let set = format!("SET search_path = {}", pgshift::quote::ident(path));
    let app = as_role(db, &roles.app, Some(1)).await;
    app.batch_execute(&set).await.unwrap();
    let (gifts, tenants) = (
        format!("SELECT count(*) FROM {table} WHERE gift IS NOT NULL"),
        format!(
            "SELECT count(DISTINCT o.tenant) FROM {table} g JOIN public.orders o ON o.id = g.{}",
            if table == "orders" { "id" } else { "order_id" }
        ),
    );
    out.push(format!(
        "app reads {} gifts",
        scalar_i64(&app, &gifts).await
    ));
    out.push(format!(
        "app reads gifts of {} tenants",
        scalar_i64(&app, &tenants).await
    ));
    let ro = as_role(db, &roles.readonly, None).await;
    ro.batch_execute(&set).await.unwrap();
    out.push(format!(
        "readonly reads {} gifts",
        scalar_i64(&ro, &gifts).await
    ));
    let old = as_role(db, &roles.app, Some(1)).await;
    let written = old
        .batch_execute(&format!(
            "INSERT INTO public.orders (id, tenant, price, gift) VALUES ({id}, 1, 5, 'a card');
             UPDATE public.orders SET gift = 'another card' WHERE id = {id};
             DELETE FROM public.orders WHERE id = {id}"
        ))
        .await
        .err()
        .map(|e| format!("{e:?}"));
    out.push(format!("app writes an order with a gift: {written:?}"));
    out
}

/// `extract` moves a column out of the production-shaped table: the source keeps
/// everything that hangs on it (the column aside), and the new table gets the source's
/// owner, its privileges and the moved column's, row-level security whose policies show a
/// row exactly when its source row is shown, and the source's publication, so that no
/// role gains or loses access to the moved values, while the migration is open and after.
#[tokio::test(flavor = "multi_thread")]
async fn extract_keeps_the_sources_access_on_the_moved_columns() {
    let migration = "operations:\n  - extract:\n      table: orders\n      columns: [gift]\n      into: order_gifts\n      reference_column: order_id\n";
    for run in RUNS {
        let owned = matches!(run, Run::OwnerCompletes | Run::OwnerRollsBack);
        let Fixture {
            admin,
            raw,
            roles,
            db,
        } = Fixture::new(
            run,
            "ALTER TABLE orders ADD COLUMN gift text;
             UPDATE orders SET gift = 'gift ' || id WHERE id % 2 = 0;
             COMMENT ON COLUMN orders.gift IS 'printed on the card';
             ALTER TABLE orders ALTER COLUMN gift SET STATISTICS 300;
             GRANT UPDATE (gift) ON orders TO {ro};
             ANALYZE orders;",
        )
        .await;
        let before = production::describe(&raw, "public.orders").await;
        let acts_before = behaviour(&admin, &roles).await;
        let gifts_before = gift_access(&admin, &roles, "public", "orders", 800001).await;
        assert_eq!(
            gifts_before,
            [
                format!("app reads {} gifts", ROWS / 6),
                "app reads gifts of 1 tenants".to_owned(),
                format!("readonly reads {} gifts", ROWS / 2),
                "app writes an order with a gift: None".to_owned(),
            ],
            "the fixture"
        );
        let m = Migrations::new(&[("0001_extract.yaml", migration)]);
        run_ok(
            &db,
            &m.path(),
            &[
                "start",
                m.path().join("0001_extract.yaml").to_str().unwrap(),
            ],
        )
        .await;
        let version = run_ok(&db, &m.path(), &["latest", "schema"])
            .await
            .stdout
            .trim()
            .to_owned();
        assert_eq!(
            gift_access(&admin, &roles, "public", "orders", 800002).await,
            gifts_before,
            "through the old version"
        );
        if version_views_read_under_row_security(&raw).await {
            assert_eq!(
                gift_access(&admin, &roles, &version, "order_gifts", 800003).await,
                gifts_before,
                "through the new version {version}"
            );
            assert_eq!(
                access(&admin, &roles, &version, 800004).await[..2],
                access(&admin, &roles, "public", 800005).await[..2],
            );
        } else {
            withheld(&admin, &roles, &version, "order_gifts").await;
        }
        if matches!(run, Run::Rollback | Run::OwnerRollsBack) {
            run_ok(&db, &m.path(), &["rollback"]).await;
            let after = production::describe(&raw, "public.orders").await;
            only_explained(&before, &after, |_| false);
            assert!(!table_exists(&raw, "public.order_gifts").await);
            assert_eq!(behaviour(&admin, &roles).await, acts_before);
            continue;
        }
        run_ok(&db, &m.path(), &["complete"]).await;
        let after = production::describe(&raw, "public.orders").await;
        only_explained(&before, &after, |l| {
            about(l, &["orders.gift"])
                || l.starts_with("column order of orders:")
                || l.starts_with("column grant on orders.gift ")
                || l.contains(" on order_gifts: ")
        });
        assert_eq!(behaviour(&admin, &roles).await, acts_before);
        let moved = production::describe(&raw, "public.order_gifts").await;
        let owner = if owned { &roles.owner } else { "postgres" };
        for want in [
            format!(
                "relation order_gifts kind r owner {owner} rls t force {}",
                if owned { "f" } else { "t" }
            ),
            format!(
                "grant on order_gifts to {}: SELECT with grant option",
                roles.readonly
            ),
            format!("grant on order_gifts to {}: INSERT", roles.app),
            format!(
                "column grant on order_gifts.gift to {}: UPDATE",
                roles.readonly
            ),
            "publication cdc has order_gifts".to_owned(),
        ] {
            assert!(
                moved.iter().any(|l| l.starts_with(&want)),
                "order_gifts has no `{want}`: {moved:#?}"
            );
        }
        assert!(
            moved
                .iter()
                .any(|l| l.starts_with("column order_gifts.gift text ")
                    && l.contains("stattarget 300 ")
                    && l.contains("comment printed on the card ")),
            "{moved:#?}"
        );
        let now = gift_access(&admin, &roles, "public", "order_gifts", 800006).await;
        assert_eq!(now[..3], gifts_before[..3], "after complete");
        let app = as_role(&admin, &roles.app, Some(1)).await;
        let refused = app
            .batch_execute("INSERT INTO order_gifts (order_id, gift) VALUES (2, 'not mine')")
            .await
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_owned()));
        assert_eq!(refused.as_deref(), Some("42501"), "another tenant's order");
    }
}

/// What would stop the moved columns' drop at complete (a view over one, a trigger on
/// UPDATE OF one) is refused by plan and start, naming each, before anything changes.
#[tokio::test(flavor = "multi_thread")]
async fn extract_refuses_what_uses_the_moved_columns_before_anything_changes() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    production::create(&raw, &db.name, 100, false).await;
    let before = production::describe(&raw, "public.orders").await;
    let m = Migrations::new(&[(
        "0001_extract.yaml",
        "operations:\n  - extract:\n      table: orders\n      columns: [note, code]\n      into: order_details\n      reference_column: order_id\n",
    )]);
    refused_by_plan_and_start(
        &db,
        &m,
        "0001_extract.yaml",
        &[
            "view \"public\".\"big_orders\" uses a column of \"public\".\"orders\" that extract moves into order_details",
            "trigger \"orders_touch_always\" uses a column",
        ],
    )
    .await;
    assert!(!table_exists(&raw, "pgshift.migrations").await);
    assert!(!table_exists(&raw, "public.order_details").await);
    assert_eq!(production::describe(&raw, "public.orders").await, before);
}

//! A production-shaped schema, and a description of everything that hangs on its tables,
//! read from the catalog, for tests that check a migration changed only what it says.
//!
//! `orders` has what real tables have: grants for an application role and a read-only
//! role (one with its grant option), a column grant, row-level security enabled and forced
//! with a permissive and a restrictive policy, a BEFORE UPDATE trigger, a disabled trigger
//! and one that fires always, a rule, a publication, storage parameters of the table and of
//! its TOAST table, comments, a column statistics target, a column's storage, an extended
//! statistics object, a replica identity on a unique index, a foreign key to itself and
//! one from `order_items`, plain and nested views (one with `security_barrier` and a check
//! option), and a materialized view with an index. Role names carry the database's name:
//! roles belong to the cluster, and tests run in parallel.

use tokio_postgres::Client;

/// The roles of one database's fixture.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The application: reads and writes its tenant's rows.
    pub app: String,
    /// Reads every tenant's rows it may (SELECT, with the grant option).
    pub readonly: String,
    /// Owns the tables; not a superuser; CREATE on the database (managed PostgreSQL).
    pub owner: String,
}

impl Roles {
    pub fn for_database(db: &str) -> Roles {
        Roles {
            app: format!("{db}_app"),
            readonly: format!("{db}_ro"),
            owner: format!("{db}_owner"),
        }
    }
}

/// The fixture's schema and rows, `rows` orders over three tenants. Run by a superuser;
/// with `owned`, the tables belong to `roles.owner` instead.
pub fn schema_sql(roles: &Roles, db: &str, rows: i64, owned: bool) -> String {
    let q = |s: &str| pgshift::quote::ident(s).to_string();
    let (app, ro, owner) = (q(&roles.app), q(&roles.readonly), q(&roles.owner));
    let mut sql = format!(
        "CREATE ROLE {app};
         CREATE ROLE {ro};
         CREATE ROLE {owner} LOGIN PASSWORD 'owner' NOSUPERUSER;
         GRANT CREATE ON DATABASE {db} TO {owner};
         GRANT CREATE, USAGE ON SCHEMA public TO {owner};
         GRANT {app}, {ro} TO {owner};
         ",
        db = q(db)
    );
    if owned {
        sql.push_str(&format!("SET ROLE {owner};\n"));
    }
    sql.push_str(&format!(
        "CREATE TABLE customers (id bigint PRIMARY KEY, tenant int NOT NULL);
         INSERT INTO customers SELECT g, g % 3 FROM generate_series(1, 100) g;
         CREATE TABLE orders (
             id int PRIMARY KEY,
             tenant int NOT NULL,
             customer_id bigint REFERENCES customers,
             price int NOT NULL,
             note text,
             code varchar(20),
             rate numeric(4,2),
             updated_at timestamptz NOT NULL DEFAULT now(),
             parent_id int REFERENCES orders (id)
         ) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02, toast.autovacuum_enabled = false);
         CREATE TABLE order_items (
             id bigint PRIMARY KEY,
             order_id int NOT NULL REFERENCES orders ON DELETE CASCADE,
             qty int NOT NULL
         );
         INSERT INTO orders (id, tenant, customer_id, price, note, code, rate, parent_id)
             SELECT g, g % 3, 1 + g % 100, g * 10, 'order ' || g, 'C' || g, (g % 100) / 10.0,
                    CASE WHEN g > 1 AND g % 10 = 0 THEN g - 1 END
             FROM generate_series(1, {rows}) g;
         INSERT INTO order_items SELECT g, 1 + (g % {rows}), g % 7 FROM generate_series(1, {rows}) g;
         COMMENT ON TABLE orders IS 'customer orders';
         COMMENT ON COLUMN orders.price IS 'in cents';
         ALTER TABLE orders ALTER COLUMN price SET STATISTICS 500;
         ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL;
         GRANT SELECT, INSERT, UPDATE, DELETE ON orders, order_items, customers TO {app};
         GRANT SELECT ON orders TO {ro} WITH GRANT OPTION;
         GRANT UPDATE (note) ON orders TO {ro};
         ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
         ALTER TABLE orders FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_rows ON orders TO {app}
             USING (tenant = current_setting('app.tenant', true)::int)
             WITH CHECK (tenant = current_setting('app.tenant', true)::int);
         CREATE POLICY readers ON orders FOR SELECT TO {ro} USING (true);
         CREATE POLICY no_negative ON orders AS RESTRICTIVE FOR ALL TO PUBLIC USING (price >= 0);
         CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS
             $$BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END$$;
         CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW
             WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION orders_touch();
         CREATE TRIGGER orders_touch_off BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
         ALTER TABLE orders DISABLE TRIGGER orders_touch_off;
         CREATE TRIGGER orders_touch_always BEFORE UPDATE OF note ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
         ALTER TABLE orders ENABLE ALWAYS TRIGGER orders_touch_always;
         CREATE RULE orders_keep_big AS ON DELETE TO orders WHERE OLD.price > 1000000000 DO INSTEAD NOTHING;
         CREATE PUBLICATION cdc FOR TABLE orders;
         CREATE STATISTICS orders_tenant_customer (dependencies) ON tenant, customer_id FROM orders;
         CREATE UNIQUE INDEX orders_id_tenant ON orders (id, tenant);
         ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_id_tenant;
         CREATE VIEW order_totals AS SELECT tenant, sum(price) AS total, count(*) AS n FROM orders GROUP BY tenant;
         CREATE VIEW big_orders WITH (security_barrier = true) AS
             SELECT id, tenant, price, code, rate FROM orders WHERE price > 100 WITH LOCAL CHECK OPTION;
         CREATE VIEW big_order_count AS SELECT count(*) AS n FROM big_orders;
         COMMENT ON VIEW order_totals IS 'per tenant';
         GRANT SELECT ON order_totals, big_orders TO {ro};
         CREATE MATERIALIZED VIEW order_stats AS SELECT tenant, count(*) AS n, max(price) AS top FROM orders GROUP BY tenant;
         CREATE UNIQUE INDEX order_stats_tenant ON order_stats (tenant);
         GRANT SELECT ON order_stats TO {ro};
         ANALYZE customers, orders, order_items;
         "
    ));
    if owned {
        sql.push_str("RESET ROLE;\n");
    }
    sql
}

/// Creates the fixture in the database `db` that `admin` (a superuser) is connected to.
pub async fn create(admin: &Client, db: &str, rows: i64, owned: bool) -> Roles {
    let roles = Roles::for_database(db);
    admin
        .batch_execute(&schema_sql(&roles, db, rows, owned))
        .await
        .unwrap_or_else(|e| panic!("creating the production-shaped fixture: {e:?}"));
    roles
}

/// Everything that hangs on `table` and on the objects over it, one fact a line, read from
/// the catalog by name (so a table replaced by its copy describes the same as the table).
/// The order of the columns is its own line (`column order: ...`), so that a test of an
/// operation that cannot keep it can leave that line out.
pub const DESCRIBE: &str = r#"
WITH t AS (SELECT to_regclass($1) AS oid),
views AS (
    WITH RECURSIVE d(oid) AS (
        SELECT r.ev_class FROM pg_depend x JOIN pg_rewrite r ON r.oid = x.objid, t
        WHERE x.classid = 'pg_rewrite'::regclass AND x.refobjid = t.oid AND r.ev_class <> t.oid
          -- pgshift's version schemas are its own, not the application's
          AND (SELECT relnamespace FROM pg_class WHERE oid = r.ev_class) = (SELECT relnamespace FROM pg_class WHERE oid = t.oid)
        UNION
        SELECT r.ev_class FROM d JOIN pg_depend x ON x.refobjid = d.oid JOIN pg_rewrite r ON r.oid = x.objid
        WHERE x.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.oid
    )
    SELECT DISTINCT oid FROM d
),
rels AS (SELECT oid FROM t UNION SELECT oid FROM views)
SELECT line FROM (
    SELECT format('relation %s kind %s owner %s rls %s force %s options %s toast %s replident %s comment %s populated %s',
                  c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
                  c.reloptions, (SELECT reloptions FROM pg_class x WHERE x.oid = c.reltoastrelid), c.relreplident,
                  obj_description(c.oid, 'pg_class'), c.relispopulated) AS line
    FROM pg_class c JOIN rels USING (oid)
    UNION ALL
    SELECT format('grant on %s to %s: %s%s', c.relname,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                  a.privilege_type, CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END)
    FROM pg_class c JOIN rels USING (oid), aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
    UNION ALL
    SELECT format('column order of %s: %s', c.relname,
                  (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
    FROM pg_class c JOIN rels USING (oid)
    UNION ALL
    SELECT format('column %s.%s %s collation %s notnull %s default %s identity %s generated %s stattarget %s storage %s compression %s comment %s analyzed %s',
                  c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  (SELECT collname FROM pg_collation WHERE oid = a.attcollation), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                  coalesce(nullif((to_jsonb(a) ->> 'attstattarget')::int, -1), 0), a.attstorage,
                  to_jsonb(a) ->> 'attcompression', col_description(c.oid, a.attnum),
                  EXISTS (SELECT 1 FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname
                          WHERE n.oid = c.relnamespace AND s.tablename = c.relname AND s.attname = a.attname))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN rels ON rels.oid = c.oid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('column grant on %s.%s to %s: %s%s', c.relname, a.attname,
                  CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END,
                  x.privilege_type, CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN rels ON rels.oid = c.oid, aclexplode(a.attacl) x
    WHERE a.attacl IS NOT NULL AND NOT a.attisdropped
    UNION ALL
    SELECT format('policy %s on %s %s %s to %s using %s check %s', p.polname, c.relname,
                  CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END, p.polcmd,
                  ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r ORDER BY 1),
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN rels ON rels.oid = c.oid
    UNION ALL
    SELECT format('trigger %s enabled %s', pg_get_triggerdef(g.oid), g.tgenabled)
    FROM pg_trigger g JOIN rels ON rels.oid = g.tgrelid WHERE NOT g.tgisinternal
    UNION ALL
    SELECT format('rule %s enabled %s', pg_get_ruledef(r.oid), r.ev_enabled)
    FROM pg_rewrite r JOIN rels ON rels.oid = r.ev_class WHERE r.rulename <> '_RETURN'
    UNION ALL
    SELECT format('view %s: %s', c.relname, pg_get_viewdef(c.oid))
    FROM pg_class c JOIN views USING (oid)
    UNION ALL
    SELECT format('publication %s has %s', p.pubname, c.relname)
    FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid
    JOIN rels ON rels.oid = c.oid
    UNION ALL
    SELECT format('statistics %s target %s', pg_get_statisticsobjdef(s.oid), to_jsonb(s) ->> 'stxstattarget')
    FROM pg_statistic_ext s JOIN rels ON rels.oid = s.stxrelid
    UNION ALL
    SELECT format('index %s replident %s valid %s', pg_get_indexdef(i.indexrelid), i.indisreplident, i.indisvalid)
    FROM pg_index i JOIN rels ON rels.oid = i.indrelid
    UNION ALL
    SELECT format('constraint %s on %s: %s validated %s', k.conname, c.relname, pg_get_constraintdef(k.oid), k.convalidated)
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid, t
    WHERE k.conrelid = t.oid OR k.confrelid = t.oid
    UNION ALL
    SELECT format('label %s %s: %s', l.provider, l.objsubid, l.label)
    FROM pg_seclabel l JOIN rels ON rels.oid = l.objoid WHERE l.classoid = 'pg_class'::regclass
) lines ORDER BY line
"#;

/// The description of `table` ([`DESCRIBE`]), one fact a line.
pub async fn describe(client: &Client, table: &str) -> Vec<String> {
    client
        .query(DESCRIBE, &[&table])
        .await
        .unwrap_or_else(|e| panic!("describing {table}: {e:?}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

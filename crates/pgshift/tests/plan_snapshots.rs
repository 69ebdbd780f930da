//! The SQL each operation plans, snapshotted: a reviewer reads a change to what pgshift runs
//! in the snapshot diff. Pure: a catalog built in code, no database.

use pgshift::catalog::{Catalog, Column, Constraint, Index, Table};
use pgshift::model::{parse_migration, Format};
use pgshift::plan::{plan_migration, Action, Plan, PlanContext};
use std::path::Path;

fn column(name: &str, ty: &str, not_null: bool) -> Column {
    Column {
        name: name.into(),
        data_type: ty.into(),
        not_null,
        ..Column::default()
    }
}

fn catalog() -> Catalog {
    let mut c = Catalog {
        schema: "public".into(),
        server_version_num: 150000,
        volatile_functions: ["random".to_owned(), "clock_timestamp".to_owned()].into(),
        ..Catalog::default()
    };
    let mut orders = Table {
        name: "orders".into(),
        columns: vec![
            column("id", "integer", true),
            column("price", "integer", true),
            column("note", "character varying(50)", false),
            column("customer_id", "integer", false),
        ],
        primary_key: vec!["id".into()],
        replica_identity: "d".into(),
        ..Table::default()
    };
    orders.columns[1].comment = Some("in cents".into());
    orders.constraints.insert(
        "orders_pkey".into(),
        Constraint {
            name: "orders_pkey".into(),
            kind: "p".into(),
            columns: vec!["id".into()],
            definition: "PRIMARY KEY (id)".into(),
            ..Constraint::default()
        },
    );
    orders.constraints.insert(
        "orders_price_check".into(),
        Constraint {
            name: "orders_price_check".into(),
            kind: "c".into(),
            columns: vec!["price".into()],
            definition: "CHECK ((price >= 0))".into(),
            ..Constraint::default()
        },
    );
    orders.indexes.push(Index {
        name: "orders_pkey".into(),
        definition: "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)".into(),
        constraint: Some("orders_pkey".into()),
    });
    orders.indexes.push(Index {
        name: "orders_price_idx".into(),
        definition: "CREATE INDEX orders_price_idx ON public.orders USING btree (price)".into(),
        constraint: None,
    });
    orders.constraints.insert(
        "orders_customer_id_fkey".into(),
        Constraint {
            name: "orders_customer_id_fkey".into(),
            kind: "f".into(),
            columns: vec!["customer_id".into()],
            definition: "FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE"
                .into(),
            foreign_table: Some("customers".into()),
            foreign_columns: vec!["id".into()],
        },
    );
    c.tables.insert("orders".into(), orders);
    let mut customers = Table {
        name: "customers".into(),
        columns: vec![column("id", "integer", true), column("name", "text", true)],
        primary_key: vec!["id".into()],
        referenced_columns: vec!["id".into()],
        ..Table::default()
    };
    customers.columns[0].default = Some("nextval('customers_id_seq'::regclass)".into());
    customers.columns[0].owned_sequence = Some(("public".into(), "customers_id_seq".into()));
    customers.constraints.insert(
        "customers_pkey".into(),
        Constraint {
            name: "customers_pkey".into(),
            kind: "p".into(),
            columns: vec!["id".into()],
            definition: "PRIMARY KEY (id)".into(),
            ..Constraint::default()
        },
    );
    customers.indexes.push(Index {
        name: "customers_pkey".into(),
        definition: "CREATE UNIQUE INDEX customers_pkey ON public.customers USING btree (id)"
            .into(),
        constraint: Some("customers_pkey".into()),
    });
    c.tables.insert("customers".into(), customers);
    c.indexes.insert("orders_pkey".into(), "orders".into());
    c.indexes.insert("orders_price_idx".into(), "orders".into());
    c
}

fn render(plan: &Plan) -> String {
    let mut out = format!("version schema: {}\n", plan.version_schema);
    for v in &plan.verify {
        out.push_str(&format!(
            "verify before complete: {} ({}.{} = {}.{}; {:?})\n",
            v.description, v.table, v.key, v.other, v.other_key, v.columns
        ));
    }
    for (phase, steps) in [
        ("start", &plan.start),
        ("complete", &plan.complete),
        ("rollback", &plan.rollback),
    ] {
        out.push_str(&format!("{phase}:\n"));
        for (i, s) in steps.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", i + 1, s.description));
            match &s.action {
                Action::Sql {
                    sql,
                    transactional,
                    together,
                    ..
                } => {
                    let how = match (transactional, together) {
                        (false, _) => "(outside a transaction) ",
                        (true, true) => "(at the same time as its neighbours) ",
                        (true, false) => "",
                    };
                    for line in sql.lines() {
                        out.push_str(&format!("     {how}{}\n", line.trim_end()));
                    }
                }
                Action::Backfill(b) => {
                    if let Some(insert) = &b.insert {
                        let conflict = if insert.conflict.is_empty() {
                            String::new()
                        } else {
                            format!(" ON CONFLICT ({}) DO NOTHING", insert.conflict.join(", "))
                        };
                        out.push_str(&format!(
                            "     backfill {}.{} INSERT INTO {} ({}) SELECT {}{conflict}\n",
                            b.schema,
                            b.table,
                            insert.table,
                            insert
                                .columns
                                .iter()
                                .map(|(c, _)| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            insert
                                .columns
                                .iter()
                                .map(|(_, e)| e.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ));
                    }
                    for (col, expr) in &b.set {
                        out.push_str(&format!(
                            "     backfill {}.{} SET {col} = {expr}",
                            b.schema, b.table
                        ));
                        if let Some(condition) = &b.condition {
                            out.push_str(&format!(" WHERE {condition}"));
                        }
                        out.push('\n');
                    }
                }
                Action::VersionSchema => out.push_str("     views of the new version\n"),
                Action::CatchUp(c) => out.push_str(&format!(
                    "     replay the keys logged in {} from {} into {}\n",
                    c.log, c.source, c.shadow
                )),
            }
        }
    }
    out
}

fn plan(name: &str, yaml: &str) -> String {
    let migration =
        parse_migration(Path::new(name), yaml, Format::Yaml).unwrap_or_else(|d| panic!("{d}"));
    let catalog = catalog();
    let ctx = PlanContext {
        schema: "public",
        migration: name,
        version_schema: "public_v2".to_owned(),
        previous_version_schema: Some("public_0000_previous".into()),
        catalog: &catalog,
    };
    match plan_migration(&ctx, &migration) {
        Ok(p) => render(&p),
        Err(errors) => errors
            .iter()
            .map(|e| {
                format!(
                    "error in operation {} ({}): {} / hint: {:?}\n",
                    e.operation + 1,
                    e.kind,
                    e.message,
                    e.hint
                )
            })
            .collect(),
    }
}

macro_rules! snapshot {
    ($name:ident, $yaml:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(plan(stringify!($name), $yaml));
        }
    };
}

snapshot!(create_table, "operations:\n  - create_table:\n      name: line_items\n      comment: items of an order\n      columns:\n        - name: id\n          type: bigint\n          pk: true\n          generated:\n            identity:\n              user_specified_values: ALWAYS\n        - name: order_id\n          type: integer\n          references:\n            name: line_items_order_fk\n            table: orders\n            column: id\n            on_delete: CASCADE\n        - name: qty\n          type: int\n          check:\n            name: qty_positive\n            constraint: qty > 0\n");
snapshot!(
    drop_table,
    "operations:\n  - drop_table:\n      name: customers\n"
);
snapshot!(
    rename_table,
    "operations:\n  - rename_table:\n      from: orders\n      to: purchases\n"
);
snapshot!(add_column_with_up_not_null_unique, "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      column:\n        name: price_cents\n        type: bigint\n        unique: true\n");
snapshot!(add_column_with_plain_default_is_one_statement, "operations:\n  - add_column:\n      table: orders\n      column:\n        name: status\n        type: text\n        default: \"'new'\"\n");
snapshot!(add_column_with_volatile_default_backfills, "operations:\n  - add_column:\n      table: orders\n      column:\n        name: token\n        type: double precision\n        nullable: true\n        default: random()\n");
snapshot!(drop_column_with_down, "operations:\n  - drop_column:\n      table: orders\n      column: note\n      down: \"'none'\"\n");
snapshot!(
    rename_column,
    "operations:\n  - rename_column:\n      table: orders\n      from: note\n      to: remark\n"
);
snapshot!(alter_column_comment_and_default_are_metadata_only, "operations:\n  - alter_column:\n      table: orders\n      column: price\n      comment: price in euro cents\n      default: \"0\"\n      up: price\n      down: price\n");
snapshot!(alter_column_varchar_widening_is_metadata_only, "operations:\n  - alter_column:\n      table: orders\n      column: note\n      type: varchar(200)\n      up: note\n      down: note\n");
snapshot!(alter_column_type_change_duplicates_and_keeps_constraints, "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price\n      down: price\n");
snapshot!(alter_column_not_null_with_identity_up_is_in_place, "operations:\n  - alter_column:\n      table: orders\n      column: note\n      nullable: false\n      up: note\n      down: note\n");
snapshot!(alter_column_check_with_transforming_up_duplicates, "operations:\n  - alter_column:\n      table: orders\n      column: note\n      check:\n        name: note_length\n        constraint: length(note) > 3\n      up: SELECT CASE WHEN length(note) <= 3 THEN lpad(note, 4, '-') ELSE note END\n      down: note\n");
snapshot!(alter_column_on_a_primary_key_is_refused, "operations:\n  - alter_column:\n      table: customers\n      column: id\n      type: bigint\n      up: id\n      down: id\n");
snapshot!(create_index, "operations:\n  - create_index:\n      name: orders_note_idx\n      table: orders\n      columns:\n        - column: note\n          sort: DESC\n      predicate: note IS NOT NULL\n      storage_parameters: fillfactor = 70\n");
snapshot!(
    drop_index,
    "operations:\n  - drop_index:\n      name: orders_price_idx\n"
);
snapshot!(create_constraint_unique_in_place, "operations:\n  - create_constraint:\n      type: unique\n      table: orders\n      name: orders_note_key\n      columns: [note]\n      up:\n        note: note\n      down:\n        note: note\n");
snapshot!(create_constraint_foreign_key_in_place, "operations:\n  - create_constraint:\n      type: foreign_key\n      table: orders\n      name: orders_customer_fk\n      columns: [customer_id]\n      references:\n        table: customers\n        columns: [id]\n      up:\n        customer_id: customer_id\n      down:\n        customer_id: customer_id\n");
snapshot!(drop_constraint, "operations:\n  - drop_constraint:\n      table: orders\n      name: orders_price_check\n      up: price\n      down: price\n");
snapshot!(rename_constraint, "operations:\n  - rename_constraint:\n      table: orders\n      from: orders_price_check\n      to: price_not_negative\n");
snapshot!(set_replica_identity, "operations:\n  - set_replica_identity:\n      table: orders\n      identity:\n        type: full\n");
snapshot!(sql_with_inferred_down, "operations:\n  - sql:\n      up: CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE moods (m mood)\n");
snapshot!(update_is_a_batched_data_change, "operations:\n  - update:\n      table: orders\n      set:\n        note: upper(note)\n      where: note <> upper(note)\n");
snapshot!(unknown_table_and_column_are_reported_per_operation, "operations:\n  - add_column:\n      table: nope\n      column:\n        name: x\n        type: int\n        nullable: true\n  - drop_column:\n      table: orders\n      column: nope\n");
snapshot!(
    alter_primary_key_with_the_foreign_keys_that_reference_it,
    "operations:\n  - alter_primary_key:\n      table: customers\n      type: bigint\n"
);
snapshot!(alter_primary_key_of_a_table_without_one_is_refused, "operations:\n  - create_table:\n      name: logs\n      columns:\n        - name: line\n          type: text\n  - alter_primary_key:\n      table: logs\n      type: bigint\n");
snapshot!(extract_columns_into_a_new_table, "operations:\n  - extract:\n      table: orders\n      columns: [note, customer_id]\n      into: order_details\n      reference_column: order_id\n      id_column: id\n");
snapshot!(extract_of_a_not_null_column_is_refused, "operations:\n  - extract:\n      table: orders\n      columns: [price]\n      into: order_prices\n      reference_column: order_id\n");
snapshot!(alter_column_method_copy_copies_the_table, "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint\n      down: price::int\n      method: copy\n");
snapshot!(alter_column_method_copy_of_a_referenced_table_is_refused, "operations:\n  - alter_column:\n      table: customers\n      column: name\n      type: varchar(100)\n      up: name\n      down: name\n      method: copy\n");
snapshot!(add_column_method_copy_copies_the_table, "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      method: copy\n      column:\n        name: price_cents\n        type: bigint\n        nullable: true\n");
snapshot!(extract_with_on_delete_set_null_is_refused, "operations:\n  - extract:\n      table: orders\n      columns: [note]\n      into: order_notes\n      reference_column: order_id\n      on_delete: SET NULL\n");

//! The swap: one transaction that replaces a table by its copy, or columns by their copies,
//! and gives the replacement what hung on the original (`fidelity`). It locks first, then
//! reads what hangs on the table (so a grant made while the migration was open is carried
//! too), drops the views over it, runs the plan's swap statements, and makes everything
//! again on the replacement, the foreign keys that pointed at a copied table included (NOT
//! VALID, listed for [`validate_carried`]). The journal entry commits with it.

use crate::error::{Error, Result};
use crate::exec::{Executor, Policy};
use crate::fidelity::prebuild::{self, Replaced};
use crate::fidelity::{apply, read, DependentView};
use crate::plan::{SwapPart, SwapSpec};
use crate::quote::qualified;
use crate::state;
use std::sync::Mutex;
use tokio_postgres::Client;

type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

/// Runs `sql` in order, remembering the one running (for the error if it fails).
async fn run_all(client: &Client, last: &Mutex<String>, sql: &[String]) -> Pg<()> {
    for s in sql {
        *last.lock().unwrap() = s.clone();
        client.batch_execute(s).await?;
    }
    Ok(())
}

/// A materialized view built on the copies before the swap, to be renamed in.
struct Prebuilt {
    schema: String,
    name: String,
    built: String,
    /// Its indexes: (built under, name).
    indexes: Vec<(String, String)>,
}

/// The views made again over the replacement, each with its privileges as they were; the
/// materialized views built before the swap renamed in.
async fn recreate_views(
    client: &Client,
    last: &Mutex<String>,
    views: &[DependentView],
    prebuilt: &[Prebuilt],
) -> Pg<()> {
    for v in views {
        let sql = match prebuilt
            .iter()
            .find(|p| p.schema == v.schema && p.name == v.name)
        {
            Some(p) => apply::swap_in_view(v, &p.built, &p.indexes),
            None => apply::create_view(v),
        };
        run_all(client, last, &sql).await?;
        if let Some(oid) = read::oid(client, &v.schema, &v.name).await? {
            let now = read::grants(client, oid).await?;
            let on = format!("TABLE {}", qualified(&v.schema, &v.name));
            run_all(client, last, &apply::privileges(&on, None, &now, &v.grants)).await?;
        }
    }
    Ok(())
}

/// What a part of the swap read before it ran.
enum Read {
    Copy {
        table: String,
        copy_oid: u32,
        dressing: Box<crate::fidelity::TableDressing>,
        keys: Vec<crate::fidelity::ReferencingKey>,
        varlena: Vec<String>,
        /// The copy and, when it is partitioned, its partitions, read once.
        tree: Vec<crate::fidelity::TreeRelation>,
    },
    Columns {
        table: String,
        oid: u32,
        columns: Vec<crate::plan::SwapColumn>,
        dressings: Vec<crate::fidelity::ColumnDressing>,
        statistics: Vec<crate::fidelity::Statistics>,
        identity: Box<crate::fidelity::TableDressing>,
        /// Policies, triggers, rules and publications that use the columns.
        dependents: Box<crate::fidelity::TableDressing>,
    },
}

/// Reads what hangs on one part of the swap, and the views over it.
async fn read_part(
    client: &Client,
    schema: &str,
    part: &SwapPart,
) -> Pg<(Read, Vec<DependentView>)> {
    let table = qualified(schema, &part.table).to_string();
    let oid = read::oid(client, schema, &part.table).await?.unwrap_or(0);
    if let Some(copy) = &part.copy {
        let copy_oid = read::oid(client, schema, copy).await?.unwrap_or(0);
        let views = read::dependent_views(client, oid, None).await?;
        let read = Read::Copy {
            table,
            copy_oid,
            dressing: Box::new(read::table(client, oid, schema, &part.table).await?),
            keys: read::referencing_keys(client, oid).await?,
            varlena: read::varlena_columns(client, copy_oid).await?,
            tree: read::partition_tree(client, copy_oid).await?,
        };
        return Ok((read, views));
    }
    let old: Vec<String> = part.columns.iter().map(|c| c.old.clone()).collect();
    let views = read::dependent_views(client, oid, Some(&old)).await?;
    let r = client
        .query_one(
            "SELECT c.relreplident::text,
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid AND i.indisreplident)
             FROM pg_class c WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    let read = Read::Columns {
        table,
        oid,
        columns: part.columns.clone(),
        dressings: read::columns(client, oid, Some(&old)).await?,
        statistics: read::statistics_on(client, oid, &old).await?,
        dependents: Box::new(read::column_dependents(client, oid, &old).await?),
        identity: Box::new(crate::fidelity::TableDressing {
            replica_identity: r.try_get(0)?,
            replica_index: r.try_get(1)?,
            ..Default::default()
        }),
    };
    Ok((read, views))
}

/// What comes before the swap's statements for one part: the foreign keys that point at a
/// copied table are dropped (they are added again on the copy).
fn before(read: &Read) -> Vec<String> {
    match read {
        Read::Copy { keys, .. } => keys
            .iter()
            .map(|k| {
                format!(
                    "ALTER TABLE {} DROP CONSTRAINT {}",
                    qualified(&k.schema, &k.table),
                    crate::quote::ident(&k.name)
                )
            })
            .collect(),
        Read::Columns {
            table, dependents, ..
        } => apply::drop_dependents(table, dependents),
    }
}

/// The table's owner for a copy and, when the copy is partitioned, for each of its
/// partitions (an owner does not pass down), before the swap's statements: they make the
/// copy own the table's sequences, which must have the same owner. Made by pgshift's role,
/// the copy and its partitions would otherwise stay that role's.
fn owners(read: &Read) -> Vec<String> {
    let Read::Copy { dressing, tree, .. } = read else {
        return Vec::new();
    };
    tree.iter()
        .filter(|r| r.owner != dressing.owner)
        .map(|r| {
            format!(
                "ALTER TABLE {} OWNER TO {}",
                r.name,
                crate::quote::ident(&dressing.owner)
            )
        })
        .collect()
}

/// Gives one part's replacement what hung on the original, after the swap's statements.
async fn carry(
    client: &Client,
    last: &Mutex<String>,
    migration: &str,
    schema: &str,
    read: &Read,
) -> Pg<()> {
    match read {
        Read::Copy {
            table,
            copy_oid,
            dressing,
            keys,
            varlena,
            tree,
        } => {
            // The copy has the table's name now (and its owner, given before the swap's
            // statements): its privileges exactly as the table had them (whatever default
            // privileges gave the copy).
            // The policies it was given while the migration was open are made again below.
            let drops: Vec<String> = client
                .query(
                    "SELECT polname::text FROM pg_policy WHERE polrelid = $1",
                    &[copy_oid],
                )
                .await?
                .iter()
                .map(|r| {
                    r.try_get::<_, String>(0)
                        .map(|p| format!("DROP POLICY {} ON {table}", crate::quote::ident(&p)))
                })
                .collect::<Pg<_>>()?;
            run_all(client, last, &drops).await?;
            let now = read::grants(client, *copy_oid).await?;
            let on = format!("TABLE {table}");
            run_all(
                client,
                last,
                &apply::privileges(&on, None, &now, &dressing.grants),
            )
            .await?;
            // The tables that hold the copy's rows: the copy (named the table's name now),
            // or its leaf partitions.
            let stored_in: Vec<String> = tree
                .iter()
                .filter(|r| r.leaf)
                .map(|r| {
                    if r.root {
                        table.clone()
                    } else {
                        r.name.clone()
                    }
                })
                .collect();
            let statements =
                apply::table(dressing, &|c| varlena.iter().any(|v| v == c), &stored_in);
            run_all(client, last, &statements).await?;
            if tree.iter().any(|r| !r.root) {
                // A partitioned copy: logical replication reads each partition's own replica
                // identity, so each leaf gets the table's (an index identity: the leaf's
                // index attached to it).
                let leaves = match (
                    dressing.replica_identity.as_str(),
                    &dressing.replica_index,
                ) {
                    (kind @ ("n" | "f"), _) => stored_in
                        .iter()
                        .map(|l| {
                            format!(
                                "ALTER TABLE {l} REPLICA IDENTITY {}",
                                if kind == "n" { "NOTHING" } else { "FULL" }
                            )
                        })
                        .collect(),
                    ("i", Some(index)) => client
                        .query(
                            "SELECT format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', i.indrelid::regclass, c.relname)
                             FROM pg_partition_tree(to_regclass($1)) t JOIN pg_index i ON i.indexrelid = t.relid
                             JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1",
                            &[&qualified(&dressing.schema, index).to_string()],
                        )
                        .await?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Pg<Vec<String>>>()?,
                    _ => Vec::new(),
                };
                run_all(client, last, &leaves).await?;
            }
            for k in keys {
                let relation = qualified(&k.schema, &k.table).to_string();
                let mut sql = vec![format!(
                    "ALTER TABLE {relation} ADD CONSTRAINT {} {} NOT VALID",
                    crate::quote::ident(&k.name),
                    k.definition
                )];
                if k.validated {
                    sql.push(state::to_validate_sql(migration, &relation, &k.name));
                }
                run_all(client, last, &sql).await?;
            }
            Ok(())
        }
        Read::Columns {
            table,
            oid,
            columns,
            dressings,
            statistics,
            identity,
            dependents,
        } => {
            let varlena = read::varlena_columns(client, *oid).await?;
            let mut after = Vec::new();
            for c in columns {
                if let Some(d) = dressings.iter().find(|d| d.name == c.old) {
                    let mut d = d.clone();
                    d.name = c.name.clone();
                    after.extend(apply::column(table, &d, varlena.contains(&c.name)));
                }
            }
            // Statistics objects over a dropped column went with it.
            let still: Vec<String> = client
                .query(
                    "SELECT stxname::text FROM pg_statistic_ext WHERE stxrelid = $1",
                    &[oid],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Pg<_>>()?;
            let gone: Vec<_> = statistics
                .iter()
                .filter(|s| !still.contains(&s.name))
                .cloned()
                .collect();
            after.extend(apply::statistics(schema, &gone));
            after.extend(apply::replica_identity(table, identity));
            after.extend(apply::dependents(table, dependents));
            run_all(client, last, &after).await
        }
    }
}

/// The swap, in the open transaction: read every part, drop the views over them, run the
/// statements, carry every part over, make the views again.
async fn swap(
    client: &Client,
    last: &Mutex<String>,
    migration: &str,
    spec: &SwapSpec,
    prebuilt: &[Prebuilt],
) -> Pg<()> {
    let mut reads = Vec::new();
    let mut views: Vec<DependentView> = Vec::new();
    for part in &spec.parts {
        let (read, over) = read_part(client, &spec.schema, part).await?;
        for v in over {
            match views
                .iter_mut()
                .find(|w| w.schema == v.schema && w.name == v.name)
            {
                Some(w) => w.depth = w.depth.max(v.depth),
                None => views.push(v),
            }
        }
        reads.push(read);
    }
    views.sort_by_key(|v| v.depth);
    let mut first = apply::drop_views(&views);
    first.extend(reads.iter().flat_map(before));
    first.extend(reads.iter().flat_map(owners));
    run_all(client, last, &first).await?;
    run_all(client, last, &spec.statements).await?;
    for read in &reads {
        carry(client, last, migration, &spec.schema, read).await?;
    }
    run_all(client, last, &spec.after).await?;
    recreate_views(client, last, &views, prebuilt).await
}

/// The copies of `spec`, as the relations they replace.
fn replaced(spec: &SwapSpec) -> Vec<Replaced> {
    spec.parts
        .iter()
        .filter_map(|p| {
            Some(Replaced {
                schema: spec.schema.clone(),
                table: p.table.clone(),
                copy: p.copy.clone()?,
            })
        })
        .collect()
}

/// Drops the materialized view [`prebuild`] builds for `schema.name` (a leftover of a run
/// that stopped before its swap, or one a failed swap did not use).
fn drop_prebuilt_sql(schema: &str, name: &str) -> String {
    format!(
        "DROP MATERIALIZED VIEW IF EXISTS {}",
        qualified(schema, &prebuild::internal(name))
    )
}

/// Builds, on the copies, each populated materialized view that reads a copied table
/// directly, with its indexes, under internal names: the swap then renames them in instead
/// of scanning under its lock. One transaction, under lock_timeout (it reads the copies
/// beside the triggers that write them) and without a statement timeout (it reads them
/// whole). A view whose query cannot be pointed at the copies, or whose build fails, is left
/// to the swap (each is built under its own savepoint); a lock not granted retries the whole.
async fn prebuild(exec: &Executor, spec: &SwapSpec) -> Result<Vec<Prebuilt>> {
    let replaced = replaced(spec);
    if replaced.is_empty() {
        return Ok(Vec::new());
    }
    let policy = Policy::Batch {
        statement_timeout: None,
        // Every relation in a view's printed query qualified.
        settings: &[("search_path", "")],
    };
    let replaced = &replaced;
    exec.transaction(
        policy,
        "build the materialized views over the copy",
        |client| async move {
            let mut views = Vec::new();
            for r in replaced {
                if let Some(oid) = read::oid(client, &r.schema, &r.table).await? {
                    views.extend(read::dependent_views(client, oid, None).await?);
                }
            }
            let mut built = Vec::new();
            for v in views {
                if !v.materialized || !v.populated || v.depth != 1 {
                    continue;
                }
                let drop = drop_prebuilt_sql(&v.schema, &v.name);
                client.batch_execute(&drop).await?;
                let Some(build) = prebuild::build(&v, replaced) else {
                    continue;
                };
                client.batch_execute("SAVEPOINT pgshift_prebuild").await?;
                match client.batch_execute(&build.sql.join(";\n")).await {
                    Ok(()) => built.push(Prebuilt {
                        schema: v.schema.clone(),
                        name: v.name.clone(),
                        built: build.built,
                        indexes: build.indexes,
                    }),
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
                    {
                        return Err(e)
                    }
                    Err(_) => {
                        client
                            .batch_execute("ROLLBACK TO SAVEPOINT pgshift_prebuild")
                            .await?
                    }
                }
            }
            Ok(built)
        },
    )
    .await
}

/// Runs the swap `spec` with `finish` (the journal) in one transaction.
pub(super) async fn run(
    exec: &Executor,
    migration: &str,
    spec: &SwapSpec,
    what: &str,
    finish: &[String],
) -> Result<()> {
    let prebuilt = prebuild(exec, spec).await?;
    let last = Mutex::new(String::new());
    let outcome = exec
        .transaction(Policy::Swap, what, |client| {
            let (last, prebuilt) = (&last, &prebuilt);
            async move {
                run_all(client, last, &[spec.lock_sql()]).await?;
                swap(client, last, migration, spec, prebuilt).await?;
                for sql in finish {
                    client.batch_execute(sql).await?;
                }
                Ok(())
            }
        })
        .await;
    if outcome.is_err() && !prebuilt.is_empty() {
        // Not left to hold the copy: a rollback drops it. A rerun builds them again.
        let drop: Vec<String> = prebuilt
            .iter()
            .map(|p| drop_prebuilt_sql(&p.schema, &p.name))
            .collect();
        let _ = exec
            .transaction(
                Policy::Swap,
                "drop the materialized views built for the swap",
                |client| {
                    let drop = &drop;
                    async move { client.batch_execute(&drop.join(";")).await }
                },
            )
            .await;
    }
    outcome.map_err(|e| match e {
        Error::Statement { context, source } => Error::Statement {
            context: format!(
                "{context}, at: {}",
                crate::event::abbreviate(&last.lock().unwrap(), 300)
            ),
            source,
        },
        other => other,
    })
}

/// Validates the foreign keys the swaps of `migration` added NOT VALID, each in its own
/// transaction (SHARE UPDATE EXCLUSIVE on its table: writes go on), struck off the list in
/// the same transaction.
pub(super) async fn validate_carried(exec: &Executor, migration: &str) -> Result<()> {
    for (relation, constraint) in state::to_validate(exec.client(), migration).await? {
        let validate = crate::sql::Statement::ddl(format!(
            "ALTER TABLE {relation} VALIDATE CONSTRAINT {}",
            crate::quote::ident(&constraint)
        ));
        exec.run_transaction(
            std::slice::from_ref(&validate),
            &[state::validated_sql(migration, &relation, &constraint)],
        )
        .await?;
    }
    Ok(())
}

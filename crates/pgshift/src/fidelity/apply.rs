//! The statements that give a replacement what its original carried. Pure: the swap
//! (`phases/swap.rs`) reads, calls these, and runs what they return in its transaction.
//!
//! Definitions the server printed (triggers, rules, statistics, indexes, views) name the
//! table, not its OID, so they are run after the copy has taken the table's name: they bind
//! to the new table.

use super::{ColumnDressing, DependentView, Grant, TableDressing};
use crate::quote::{ident, literal, qualified};

fn grantee(g: &Grant) -> String {
    g.grantee
        .as_deref()
        .map_or_else(|| "PUBLIC".to_owned(), |r| ident(r).to_string())
}

/// `on` is `TABLE "s"."t"`; `column` narrows the privilege to one column.
fn grant(on: &str, column: Option<&str>, g: &Grant) -> String {
    let cols = column
        .map(|c| format!(" ({})", ident(c)))
        .unwrap_or_default();
    format!(
        "GRANT {}{cols} ON {on} TO {}{}",
        g.privilege,
        grantee(g),
        if g.grantable {
            " WITH GRANT OPTION"
        } else {
            ""
        }
    )
}

fn revoke(on: &str, column: Option<&str>, g: &Grant, only_option: bool) -> String {
    let cols = column
        .map(|c| format!(" ({})", ident(c)))
        .unwrap_or_default();
    format!(
        "REVOKE {}{}{cols} ON {on} FROM {}",
        if only_option { "GRANT OPTION FOR " } else { "" },
        g.privilege,
        grantee(g)
    )
}

/// What turns the privileges `now` into `want` (on `on`, or on its `column`): revokes of
/// what is not wanted, grants of what is missing, grant options given or taken.
pub fn privileges(on: &str, column: Option<&str>, now: &[Grant], want: &[Grant]) -> Vec<String> {
    let key = |g: &Grant| (g.grantee.clone(), g.privilege.clone());
    let mut out = Vec::new();
    for g in now {
        match want.iter().find(|w| key(w) == key(g)) {
            None => out.push(revoke(on, column, g, false)),
            Some(w) if g.grantable && !w.grantable => out.push(revoke(on, column, g, true)),
            _ => {}
        }
    }
    for w in want {
        match now.iter().find(|g| key(g) == key(w)) {
            None => out.push(grant(on, column, w)),
            Some(g) if w.grantable && !g.grantable => out.push(grant(on, column, w)),
            _ => {}
        }
    }
    out
}

/// A storage parameter as SQL: `name = 'value'` (the name is checked: it comes from the
/// catalog, and only letters, digits, `_` and `.` make one).
fn option(stored: &str, prefix: &str) -> Option<String> {
    let (name, value) = stored.split_once('=')?;
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        .then(|| format!("{prefix}{name} = {}", literal(value)))
}

fn enabled(kind: &str, table: &str, name: &str, state: &str) -> Option<String> {
    let how = match state {
        "D" => "DISABLE",
        "R" => "ENABLE REPLICA",
        "A" => "ENABLE ALWAYS",
        _ => return None,
    };
    Some(format!("ALTER TABLE {table} {how} {kind} {}", ident(name)))
}

fn policy_sql(table: &str, p: &super::Policy) -> String {
    let command = match p.command.as_str() {
        "r" => "SELECT",
        "a" => "INSERT",
        "w" => "UPDATE",
        "d" => "DELETE",
        _ => "ALL",
    };
    let roles = if p.roles.is_empty() {
        "PUBLIC".to_owned()
    } else {
        p.roles
            .iter()
            .map(|r| {
                r.as_deref()
                    .map_or_else(|| "PUBLIC".to_owned(), |r| ident(r).to_string())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sql = format!(
        "CREATE POLICY {} ON {table} AS {} FOR {command} TO {roles}",
        ident(&p.name),
        if p.permissive {
            "PERMISSIVE"
        } else {
            "RESTRICTIVE"
        }
    );
    if let Some(u) = &p.using {
        sql.push_str(&format!(" USING ({u})"));
    }
    if let Some(c) = &p.with_check {
        sql.push_str(&format!(" WITH CHECK ({c})"));
    }
    sql
}

/// What one column carries, for the column `c.name` of `table` (a column's copy once it
/// has the name, or the column of a table's copy). Grants are added to a column that has
/// none (a new column); `storage` and `compression` only where the column's type takes
/// them (`varlena`: the type is not fixed-length).
pub fn column(table: &str, c: &ColumnDressing, varlena: bool) -> Vec<String> {
    let col = ident(&c.name);
    let mut out = Vec::new();
    if let Some(t) = c.statistics_target {
        out.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {col} SET STATISTICS {t}"
        ));
    }
    if varlena {
        let storage = match c.storage.as_deref() {
            Some("p") => Some("PLAIN"),
            Some("e") => Some("EXTERNAL"),
            Some("m") => Some("MAIN"),
            Some("x") => Some("EXTENDED"),
            _ => None,
        };
        if let Some(s) = storage {
            out.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {col} SET STORAGE {s}"
            ));
        }
        let compression = match c.compression.as_deref() {
            Some("p") => Some("pglz"),
            Some("l") => Some("lz4"),
            _ => None,
        };
        if let Some(m) = compression {
            out.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {col} SET COMPRESSION {m}"
            ));
        }
    }
    out.push(format!(
        "COMMENT ON COLUMN {table}.{col} IS {}",
        c.comment
            .as_deref()
            .map_or_else(|| "NULL".to_owned(), literal)
    ));
    for (provider, label) in &c.security_labels {
        out.push(format!(
            "SECURITY LABEL FOR {} ON COLUMN {table}.{col} IS {}",
            ident(provider),
            literal(label)
        ));
    }
    let on = format!("TABLE {table}");
    out.extend(privileges(&on, Some(&c.name), &[], &c.grants));
    out
}

/// What a table carries, for its copy once the copy has the table's name (the owner and
/// the table's privileges aside: those are set first, against what the copy has).
/// `varlena` says, for a column, whether its type (in the copy) takes storage settings;
/// `stored_in` are the tables that hold its rows (itself, or its leaf partitions).
pub fn table(
    d: &TableDressing,
    varlena: &dyn Fn(&str) -> bool,
    stored_in: &[String],
) -> Vec<String> {
    let t = qualified(&d.schema, &d.name).to_string();
    let mut out = row_security_flags(&t, d);
    out.extend(dependents(&t, d));
    let options: Vec<String> = d
        .options
        .iter()
        .filter_map(|o| option(o, ""))
        .chain(d.toast_options.iter().filter_map(|o| option(o, "toast.")))
        .collect();
    if !options.is_empty() {
        // Storage parameters go where the rows are: on a partitioned table (which takes
        // none), to each of its leaf partitions.
        for leaf in stored_in {
            out.push(format!("ALTER TABLE {leaf} SET ({})", options.join(", ")));
        }
    }
    out.push(format!(
        "COMMENT ON TABLE {t} IS {}",
        d.comment
            .as_deref()
            .map_or_else(|| "NULL".to_owned(), literal)
    ));
    for (provider, label) in &d.security_labels {
        out.push(format!(
            "SECURITY LABEL FOR {} ON TABLE {t} IS {}",
            ident(provider),
            literal(label)
        ));
    }
    out.extend(replica_identity(&t, d));
    out.extend(statistics(&d.schema, &d.statistics));
    for c in &d.columns {
        out.extend(column(&t, c, varlena(&c.name)));
    }
    out
}

/// Row-level security enabled and forced (or not) as in `d`, and its policies, on `table`
/// (which has none of its own yet).
pub fn row_security(table: &str, d: &TableDressing) -> Vec<String> {
    let mut out = row_security_flags(table, d);
    out.extend(d.policies.iter().map(|p| policy_sql(table, p)));
    out
}

fn row_security_flags(table: &str, d: &TableDressing) -> Vec<String> {
    vec![
        format!(
            "ALTER TABLE {table} {} ROW LEVEL SECURITY",
            if d.row_security { "ENABLE" } else { "DISABLE" }
        ),
        format!(
            "ALTER TABLE {table} {} ROW LEVEL SECURITY",
            if d.force_row_security {
                "FORCE"
            } else {
                "NO FORCE"
            }
        ),
    ]
}

/// The policies, triggers, rules and publication memberships of `d`, made again on
/// `table`.
pub fn dependents(table: &str, d: &TableDressing) -> Vec<String> {
    let mut out: Vec<String> = d.policies.iter().map(|p| policy_sql(table, p)).collect();
    for tr in &d.triggers {
        out.push(tr.sql.clone());
        out.extend(enabled("TRIGGER", table, &tr.name, &tr.enabled));
    }
    for r in &d.rules {
        out.push(r.sql.clone());
        out.extend(enabled("RULE", table, &r.name, &r.enabled));
    }
    for p in &d.publications {
        let mut add = format!("ALTER PUBLICATION {} ADD TABLE {table}", ident(&p.name));
        if let Some(cols) = &p.columns {
            add.push_str(&format!(
                " ({})",
                cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(f) = &p.row_filter {
            add.push_str(&format!(" WHERE ({f})"));
        }
        out.push(add);
    }
    out
}

/// Drops the policies, triggers and rules of `d` from `table` and takes it out of its
/// publications (before a column they use is dropped; [`dependents`] makes them again).
pub fn drop_dependents(table: &str, d: &TableDressing) -> Vec<String> {
    let mut out: Vec<String> = d
        .policies
        .iter()
        .map(|p| format!("DROP POLICY {} ON {table}", ident(&p.name)))
        .collect();
    out.extend(
        d.triggers
            .iter()
            .map(|t| format!("DROP TRIGGER {} ON {table}", ident(&t.name))),
    );
    out.extend(
        d.rules
            .iter()
            .map(|r| format!("DROP RULE {} ON {table}", ident(&r.name))),
    );
    out.extend(
        d.publications
            .iter()
            .map(|p| format!("ALTER PUBLICATION {} DROP TABLE {table}", ident(&p.name))),
    );
    out
}

/// The table's replica identity, set again (its index may have been made anew).
pub fn replica_identity(table: &str, d: &TableDressing) -> Option<String> {
    match (d.replica_identity.as_str(), &d.replica_index) {
        ("n", _) => Some(format!("ALTER TABLE {table} REPLICA IDENTITY NOTHING")),
        ("f", _) => Some(format!("ALTER TABLE {table} REPLICA IDENTITY FULL")),
        ("i", Some(index)) => Some(format!(
            "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {}",
            ident(index)
        )),
        _ => None,
    }
}

/// Extended statistics objects made again, with their own targets.
pub fn statistics(schema: &str, stats: &[super::Statistics]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stats {
        out.push(s.sql.clone());
        if let Some(target) = s.target {
            out.push(format!(
                "ALTER STATISTICS {} SET STATISTICS {target}",
                qualified(schema, &s.name)
            ));
        }
    }
    out
}

/// Drops the views, those made on others first.
pub fn drop_views(views: &[DependentView]) -> Vec<String> {
    views
        .iter()
        .rev()
        .map(|v| {
            format!(
                "DROP {}VIEW {}",
                if v.materialized { "MATERIALIZED " } else { "" },
                qualified(&v.schema, &v.name)
            )
        })
        .collect()
}

/// Makes a view again as it was (its privileges aside: set afterwards against what the
/// new view got by default).
pub fn create_view(v: &DependentView) -> Vec<String> {
    let name = qualified(&v.schema, &v.name).to_string();
    let options: Vec<String> = v.options.iter().filter_map(|o| option(o, "")).collect();
    let with = if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", options.join(", "))
    };
    let body = v.definition.trim().trim_end_matches(';');
    let mut out = vec![if v.materialized {
        format!(
            "CREATE MATERIALIZED VIEW {name}{with} AS {body} WITH {}DATA",
            if v.populated { "" } else { "NO " }
        )
    } else {
        format!("CREATE VIEW {name}{with} AS {body}")
    }];
    out.extend(v.indexes.iter().cloned());
    out.extend(dress_view(v));
    out
}

/// Swaps in a materialized view built before the swap under `built` (in the view's schema),
/// with its indexes (each `(built under, name)`): renamed to the view's names, then dressed
/// as the view was.
pub fn swap_in_view(v: &DependentView, built: &str, indexes: &[(String, String)]) -> Vec<String> {
    let mut out = vec![format!(
        "ALTER MATERIALIZED VIEW {} RENAME TO {}",
        qualified(&v.schema, built),
        ident(&v.name)
    )];
    for (from, to) in indexes {
        out.push(format!(
            "ALTER INDEX {} RENAME TO {}",
            qualified(&v.schema, from),
            ident(to)
        ));
    }
    out.extend(dress_view(v));
    out
}

/// What a view made again gets besides its query and indexes: column defaults, triggers,
/// rules, owner, comments and column privileges.
fn dress_view(v: &DependentView) -> Vec<String> {
    let name = qualified(&v.schema, &v.name).to_string();
    let mut out = Vec::new();
    for (column, default) in &v.defaults {
        out.push(format!(
            "ALTER VIEW {name} ALTER COLUMN {} SET DEFAULT {default}",
            ident(column)
        ));
    }
    out.extend(v.triggers.iter().map(|t| t.sql.clone()));
    out.extend(v.rules.iter().map(|r| r.sql.clone()));
    let kind = if v.materialized {
        "MATERIALIZED VIEW"
    } else {
        "VIEW"
    };
    out.push(format!("ALTER {kind} {name} OWNER TO {}", ident(&v.owner)));
    out.push(format!(
        "COMMENT ON {kind} {name} IS {}",
        v.comment
            .as_deref()
            .map_or_else(|| "NULL".to_owned(), literal)
    ));
    for c in &v.columns {
        out.push(format!(
            "COMMENT ON COLUMN {name}.{} IS {}",
            ident(&c.name),
            c.comment
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), literal)
        ));
        let on = format!("TABLE {name}");
        out.extend(privileges(&on, Some(&c.name), &[], &c.grants));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(who: Option<&str>, what: &str, grantable: bool) -> Grant {
        Grant {
            grantee: who.map(str::to_owned),
            privilege: what.to_owned(),
            grantable,
        }
    }

    #[test]
    fn privileges_move_from_what_is_there_to_what_was_there() {
        let now = [
            g(Some("owner"), "SELECT", false),
            g(Some("intruder"), "SELECT", false),
        ];
        let want = [
            g(Some("owner"), "SELECT", false),
            g(Some("app"), "INSERT", true),
            g(None, "SELECT", false),
        ];
        let sql = privileges("TABLE \"public\".\"t\"", None, &now, &want);
        assert_eq!(
            sql,
            [
                r#"REVOKE SELECT ON TABLE "public"."t" FROM "intruder""#,
                r#"GRANT INSERT ON TABLE "public"."t" TO "app" WITH GRANT OPTION"#,
                r#"GRANT SELECT ON TABLE "public"."t" TO PUBLIC"#,
            ]
        );
        let narrowed = privileges(
            "TABLE t",
            Some("price"),
            &[g(Some("a"), "UPDATE", true)],
            &[g(Some("a"), "UPDATE", false)],
        );
        assert_eq!(
            narrowed,
            [r#"REVOKE GRANT OPTION FOR UPDATE ("price") ON TABLE t FROM "a""#]
        );
    }

    #[test]
    fn storage_parameters_are_quoted_and_a_strange_name_is_left_out() {
        assert_eq!(option("fillfactor=70", "").unwrap(), "fillfactor = '70'");
        assert_eq!(
            option("autovacuum_enabled=false", "toast.").unwrap(),
            "toast.autovacuum_enabled = 'false'"
        );
        assert!(option("a) ; DROP TABLE x; (b=1", "").is_none());
    }
}

//! `pgshift latest schema|url`: the schema new clients put first on their search_path.
//! Reads only.

use crate::error::Result;
use crate::state;

/// `pgshift latest schema`: the newest version schema.
pub async fn latest_schema(client: &tokio_postgres::Client, base: &str) -> Result<Latest> {
    let version = state::installed_version(client).await?;
    let latest = match version {
        Some(v) if v >= 2 => state::latest_version_schema(client).await?,
        _ => None,
    };
    let Some((schema, migration)) = latest else {
        return Ok(Latest {
            schema: base.to_owned(),
            version_schema: false,
            note: Some(format!(
                "no version schema exists (none was started, or only raw SQL migrations ran): clients use the tables in {base} directly"
            )),
        });
    };
    // A raw SQL migration changes the tables under the views; views made before it do not
    // show new columns or tables it added.
    let later_sql = client
        .query(
            &format!(
                "SELECT s.name FROM {t} s, {t} v WHERE v.name = $1 AND s.kind = 'sql' AND s.status = 'applied' AND s.started_at > v.started_at ORDER BY s.name",
                t = state::table("migrations")
            ),
            &[&migration],
        )
        .await?;
    let names = later_sql
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<Vec<String>, _>>()?;
    let note = (!later_sql.is_empty()).then(|| {
        format!(
            "raw SQL migration(s) {} ran after {schema} was made: its views do not show their changes; clients that need them use the tables in {base} (after pgshift complete)",
            names.join(", ")
        )
    });
    Ok(Latest {
        schema,
        version_schema: true,
        note,
    })
}

/// What `pgshift latest` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latest {
    /// The schema new clients should put first on their search_path.
    pub schema: String,
    /// False when no version schema exists and `schema` is the base schema.
    pub version_schema: bool,
    /// Said on standard error (JSON: the `note` field).
    pub note: Option<String>,
}

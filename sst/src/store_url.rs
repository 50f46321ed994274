//! Store URLs for the command line (`sqlite:FILE` or a path, `postgres://…?schema=`,
//! `mysql://…?database=`, `mongodb://…/db?prefix=`): parsing, and opening a store that reads
//! and never writes, after checking that the database holds SST peer tables at all.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use sst::core::Store;

/// The URL forms `sst verify --db` accepts, for `--help` and error messages.
pub(crate) const FORMS: &str = "\
Store URLs (--db, repeat for each database):
    sqlite:FILE or FILE                       SQLite file, opened read-only
    postgres://USER@HOST:PORT/DB?schema=S     PostgreSQL; peer tables in schema S (default public)
    mysql://USER@HOST:PORT/DB                 MySQL / MariaDB; peer tables in database DB,
    mysql://USER@HOST:PORT?database=DB          or in the one named by ?database=
    mongodb://HOST:PORT/DB?prefix=P           MongoDB; collections P+sst_state, … in database DB
                                                (default database sst, no prefix)
Other query parameters are passed to the driver.";

/// Where a node's peer tables live, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL schema.
    Postgres {
        /// Driver URL (without `schema=`).
        url: String,
        /// Schema of the peer tables.
        schema: String,
    },
    /// A MySQL / MariaDB database.
    Mysql {
        /// Driver URL (without `database=`).
        url: String,
        /// Database of the peer tables (`None`: the URL's).
        database: Option<String>,
    },
    /// A MongoDB database.
    Mongo {
        /// Driver URL (without `prefix=`).
        url: String,
        /// Database of the peer collections.
        database: String,
        /// Prefix of the collection names.
        prefix: String,
    },
}

/// Removes query parameter `name` from `url`: the URL without it and its value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(v.to_owned());
                false
            }
            _ => !p.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, value)
}

/// The path of a URL (`scheme://authority/PATH?query`), without its leading `/`.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let before_query = after_scheme.split('?').next().unwrap_or_default();
    before_query.split_once('/').map_or("", |(_, p)| p)
}

impl StoreUrl {
    /// Parses one `--db` value.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        let scheme = s.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => {
                let (url, schema) = take_param(s, "schema");
                Ok(StoreUrl::Postgres {
                    url,
                    schema: schema.unwrap_or_else(|| "public".to_owned()),
                })
            }
            Some("mysql" | "mariadb") => {
                let (url, database) = take_param(s, "database");
                let url = match url.strip_prefix("mariadb://") {
                    Some(rest) => format!("mysql://{rest}"),
                    None => url,
                };
                Ok(StoreUrl::Mysql { url, database })
            }
            Some("mongodb") => {
                let (url, prefix) = take_param(s, "prefix");
                let database = match url_path(&url) {
                    "" => "sst".to_owned(),
                    db => db.to_owned(),
                };
                Ok(StoreUrl::Mongo {
                    url,
                    database,
                    prefix: prefix.unwrap_or_default(),
                })
            }
            Some("sqlite") => Ok(StoreUrl::Sqlite(PathBuf::from(&s["sqlite://".len()..]))),
            Some(other) => bail!("{s}: unknown store URL scheme `{other}://`\n\n{FORMS}"),
            None => {
                let path = s.strip_prefix("sqlite:").unwrap_or(s);
                if path.is_empty() {
                    bail!("empty SQLite path in `{s}`");
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            }
        }
    }

    /// What to call this database in reports: the file, or the URL with any password hidden
    /// and the schema / database / prefix it names.
    pub(crate) fn label(&self) -> String {
        fn hide_password(url: &str) -> String {
            let Some((scheme, rest)) = url.split_once("://") else {
                return url.to_owned();
            };
            match rest.split_once('@') {
                Some((user_info, host)) if user_info.contains(':') => {
                    let user = user_info.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{host}")
                }
                _ => url.to_owned(),
            }
        }
        match self {
            StoreUrl::Sqlite(path) => path.display().to_string(),
            StoreUrl::Postgres { url, schema } => {
                format!("{} (schema {schema})", hide_password(url))
            }
            StoreUrl::Mysql { url, database } => match database {
                Some(db) => format!("{} (database {db})", hide_password(url)),
                None => hide_password(url),
            },
            StoreUrl::Mongo {
                url,
                database,
                prefix,
            } if prefix.is_empty() => format!("{} (database {database})", hide_password(url)),
            StoreUrl::Mongo {
                url,
                database,
                prefix,
            } => format!(
                "{} (database {database}, prefix {prefix})",
                hide_password(url)
            ),
        }
    }

    /// The Cargo feature of the `sst` crate that compiles this backend in.
    fn feature(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Postgres { .. } => "postgres",
            StoreUrl::Mysql { .. } => "mysql",
            StoreUrl::Mongo { .. } => "mongo",
        }
    }

    /// Opens the store for reading only, after checking that the database holds SST peer
    /// tables: SQLite read-only (the file stays byte-identical); on servers nothing is
    /// migrated or created, and a MongoDB store finishes no pending batch of another writer.
    pub(crate) async fn open_for_verify(&self) -> anyhow::Result<Arc<dyn Store>> {
        if !sst::adapters().contains(&self.feature()) {
            bail!(
                "{}: this sst binary was built without the {} adapter; rebuild with the `{}` \
                 Cargo feature (cargo run -p sst --features {} -- verify …)",
                self.label(),
                self.feature(),
                self.feature(),
                self.feature()
            );
        }
        self.open().await
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let label = self.label();
        let no_tables = |looked_for: &[String], place: &str| {
            anyhow::anyhow!(
                "{label}: holds no SST tables (looked for {} in {place}); is this a node \
                 database?",
                looked_for.join(", ")
            )
        };
        match self {
            #[cfg(feature = "sqlite")]
            StoreUrl::Sqlite(path) => {
                use sst::sqlite::{SqliteConfig, SqliteStore};
                if !path.is_file() {
                    bail!("{}: no such database file", path.display());
                }
                let config = SqliteConfig::file(path).read_only();
                let names = peer_tables(&config.tables);
                if sqlite_tables(path, &names)?.is_empty() {
                    return Err(no_tables(&names, "the file"));
                }
                let store = SqliteStore::open(config)
                    .await
                    .with_context(|| format!("opening {label}"))?;
                Ok(Arc::new(store))
            }
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres { url, schema } => {
                use sst::postgres::{PostgresConfig, PostgresStore};
                let config = PostgresConfig::new(url.clone())
                    .schema(schema.clone())
                    .max_connections(2);
                let names = peer_tables(&config.tables);
                let store = PostgresStore::connect(config)
                    .await
                    .with_context(|| format!("connecting to {label}"))?;
                let found: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = $1 AND table_name = ANY($2)",
                )
                .bind(schema)
                .bind(&names)
                .fetch_all(store.pool())
                .await
                .with_context(|| format!("listing the tables of {label}"))?;
                if found.is_empty() {
                    return Err(no_tables(&names, &format!("schema {schema}")));
                }
                Ok(Arc::new(store))
            }
            #[cfg(feature = "mysql")]
            StoreUrl::Mysql { url, database } => {
                use mysql_async::prelude::Queryable;
                use sst::mysql::{MysqlConfig, MysqlStore};
                let mut config = MysqlConfig::new(url.clone()).max_connections(2);
                if let Some(db) = database {
                    config = config.database(db.clone());
                }
                let names = peer_tables(&config.tables);
                let store = MysqlStore::connect(config)
                    .await
                    .with_context(|| format!("connecting to {label}"))?;
                let db = store.database().to_owned();
                let mut conn = store
                    .pool()
                    .get_conn()
                    .await
                    .with_context(|| format!("connecting to {label}"))?;
                let tables: Vec<String> = conn
                    .exec(
                        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                         WHERE table_schema = ?",
                        (db.clone(),),
                    )
                    .await
                    .with_context(|| format!("listing the tables of {label}"))?;
                drop(conn);
                if !tables.iter().any(|t| names.contains(t)) {
                    return Err(no_tables(&names, &format!("database {db}")));
                }
                Ok(Arc::new(store))
            }
            #[cfg(feature = "mongo")]
            StoreUrl::Mongo {
                url,
                database,
                prefix,
            } => {
                use sst::mongo::{MongoConfig, MongoStore};
                // Leave pending batches of a recoverable commit alone (finishing or undoing
                // them is a write): 100 years of grace.
                let config = MongoConfig::new(url.clone(), database.clone())
                    .with_prefix(prefix)
                    .with_recover_after(std::time::Duration::from_secs(100 * 365 * 86_400));
                let c = &config.collections;
                let names =
                    [&c.state, &c.history, &c.event, &c.actor, &c.contract].map(String::clone);
                let store = MongoStore::open(config.clone())
                    .await
                    .with_context(|| format!("connecting to {label}"))?;
                let found = store
                    .database()
                    .list_collection_names()
                    .await
                    .with_context(|| format!("listing the collections of {label}"))?;
                if !found.iter().any(|f| names.contains(f)) {
                    return Err(no_tables(&names, &format!("database {database}")));
                }
                Ok(Arc::new(store))
            }
            #[allow(unreachable_patterns)]
            _ => bail!("{label}: the {} adapter is not compiled in", self.feature()),
        }
    }
}

/// The names of the peer tables.
fn peer_tables(tables: &sst::core::TableNames) -> Vec<String> {
    tables.fields().iter().map(|f| f.1.to_owned()).collect()
}

/// Which of `names` are tables of the SQLite file at `path`, read through a read-only
/// connection.
#[cfg(feature = "sqlite")]
fn sqlite_tables(path: &std::path::Path, names: &[String]) -> anyhow::Result<Vec<String>> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", path.display()))?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .with_context(|| format!("{}: not a SQLite database?", path.display()))?;
    let all = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a SQLite database?", path.display()))?;
    Ok(all.into_iter().filter(|t| names.contains(t)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() -> anyhow::Result<()> {
        assert_eq!(
            StoreUrl::parse("a.db")?,
            StoreUrl::Sqlite(PathBuf::from("a.db"))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:/tmp/a.db")?,
            StoreUrl::Sqlite(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/a.db")?,
            StoreUrl::Sqlite(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(
            StoreUrl::parse("postgres://u:pw@h:5432/app?sslmode=disable&schema=node_a")?,
            StoreUrl::Postgres {
                url: "postgres://u:pw@h:5432/app?sslmode=disable".into(),
                schema: "node_a".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("postgresql://h/app")?,
            StoreUrl::Postgres {
                url: "postgresql://h/app".into(),
                schema: "public".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("mysql://root@h:3306/?database=node_a")?,
            StoreUrl::Mysql {
                url: "mysql://root@h:3306/".into(),
                database: Some("node_a".into())
            }
        );
        assert_eq!(
            StoreUrl::parse("mariadb://root@h/app")?,
            StoreUrl::Mysql {
                url: "mysql://root@h/app".into(),
                database: None
            }
        );
        assert_eq!(
            StoreUrl::parse("mongodb://h:27017/nodes?prefix=a_&directConnection=true")?,
            StoreUrl::Mongo {
                url: "mongodb://h:27017/nodes?directConnection=true".into(),
                database: "nodes".into(),
                prefix: "a_".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("mongodb://h:27017")?,
            StoreUrl::Mongo {
                url: "mongodb://h:27017".into(),
                database: "sst".into(),
                prefix: String::new()
            }
        );
        assert!(StoreUrl::parse("redis://h").is_err());
        assert!(StoreUrl::parse("sqlite:").is_err());
        Ok(())
    }

    #[test]
    fn labels_hide_passwords() -> anyhow::Result<()> {
        let l = StoreUrl::parse("postgres://u:secret@h/app?schema=n")?.label();
        assert_eq!(l, "postgres://u:***@h/app (schema n)");
        Ok(())
    }
}

//! The tests' PostgreSQL server (`make test` starts one with `scripts/postgres`), with a fresh
//! database per test, so that hosts of one test never see another's state or relayed messages.

use tokio_postgres::NoTls;

use super::unique;

/// The server's database of the tests: `EVENTHOST_POSTGRES_URL`, default that of
/// `scripts/postgres url`.
pub fn postgres_url() -> String {
    std::env::var("EVENTHOST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://eventhost@127.0.0.1:5433/eventhost".into())
}

/// Creates an empty database on the tests' server and returns its URL.
pub async fn fresh_database() -> String {
    let url = postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} (make test starts it): {e}"));
    tokio::spawn(connection);
    let name = unique("eventhost").replace('-', "_");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("database created");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Runs `sql` on the database at `url` and returns the first column of each row, as text.
pub async fn query(url: &str, sql: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connected");
    tokio::spawn(connection);
    let rows = client.simple_query(sql).await.expect("query runs");
    rows.iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

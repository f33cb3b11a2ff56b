//! The alerts `drover serve` has open, kept across its restarts: a firing
//! alert is not sent again by the next server, and its resolve message still
//! goes out when the condition clears.

use rusqlite::params;

use crate::{StateError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub rule: String,
    pub subject: String,
    /// Since when the condition holds.
    pub since_ms: i64,
    /// Whether the firing message went out.
    pub fired: bool,
}

impl Store {
    pub fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        let mut st =
            self.conn.prepare("SELECT rule, subject, since_ms, fired FROM open_alerts ORDER BY rule, subject")?;
        let rows = st.query_map([], |r| {
            Ok(OpenAlert { rule: r.get(0)?, subject: r.get(1)?, since_ms: r.get(2)?, fired: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replace the whole set, in one transaction (it is small: one row per
    /// rule and subject whose condition holds).
    pub fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM open_alerts", [])?;
        {
            let mut st =
                tx.prepare("INSERT INTO open_alerts (rule, subject, since_ms, fired) VALUES (?1, ?2, ?3, ?4)")?;
            for a in alerts {
                st.execute(params![a.rule, a.subject, a.since_ms, a.fired])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

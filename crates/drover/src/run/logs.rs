//! `drover logs`: which hosts run a service (asked before any host is
//! contacted), fetching their lines, and merging them by time across hosts
//! while each host's lines keep the order the host wrote them in (a
//! traceback whose lines share a millisecond stays the right way up).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use drover_proto::{LogLine, Request};
use drover_spec::{Host, Project};
use tokio::sync::mpsc;

use super::fleet::Fleet;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no service or instance {name:?} in the project (services: {services})")]
    Unknown { name: String, services: String },
    #[error("none of the selected hosts runs {name} (it runs on {runs_on})")]
    NotSelected { name: String, runs_on: String },
    #[error(transparent)]
    Project(#[from] Box<drover_spec::SpecError>),
}

/// A host to ask, and the units on it to read: the service itself, or,
/// for a service with instances, each of its instances placed there.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: Host,
    pub units: Vec<String>,
}

/// Where `name` (a service or one instance of it) runs among `selected`.
pub fn targets(project: &Project, selected: &[Host], name: &str) -> Result<Vec<Target>, LogsError> {
    let endpoints = project.endpoints().map_err(|e| Box::new(e.clone()))?;
    let mut units: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (service, instances) in endpoints {
        for i in instances.iter().filter(|i| service == name || i.name == name) {
            units.entry(i.host.as_str()).or_default().push(i.name.clone());
        }
    }
    if units.is_empty() {
        let services: BTreeSet<&str> = endpoints.keys().map(String::as_str).collect();
        let services =
            if services.is_empty() { "none".into() } else { services.into_iter().collect::<Vec<_>>().join(", ") };
        return Err(LogsError::Unknown { name: name.into(), services });
    }
    let out: Vec<Target> = selected
        .iter()
        .filter_map(|h| Some(Target { host: h.clone(), units: units.get(h.name.as_str())?.clone() }))
        .collect();
    if out.is_empty() {
        let runs_on = units.keys().copied().collect::<Vec<_>>().join(", ");
        return Err(LogsError::NotSelected { name: name.into(), runs_on });
    }
    Ok(out)
}

/// A batch of lines from one unit of one host, labelled as printed.
pub type Batch = (String, Vec<LogLine>);

/// Stream every target's units' lines to `tx`, labelled `host` (or
/// `host/unit` when a host runs several instances). Per host, errors.
pub async fn fetch(
    fleet: &Fleet,
    targets: Vec<Target>,
    req: Request,
    follow: bool,
    tx: mpsc::Sender<Batch>,
) -> Vec<(String, Result<(), String>)> {
    let units: std::sync::Arc<BTreeMap<String, Vec<String>>> =
        std::sync::Arc::new(targets.iter().map(|t| (t.host.name.clone(), t.units.clone())).collect());
    let hosts: Vec<Host> = targets.into_iter().map(|t| t.host).collect();
    let f = fleet.clone();
    fleet
        .each(&hosts, move |h, c| {
            let (req, tx, f, units) = (req.clone(), tx.clone(), f.clone(), units.clone());
            async move {
                let list = units.get(&h.name).cloned().unwrap_or_default();
                let label = |u: &str| if list.len() > 1 { format!("{}/{u}", h.name) } else { h.name.clone() };
                let mut conn = Some(c);
                let mut streams = Vec::new();
                for unit in &list {
                    let mut c = match conn.take() {
                        Some(c) => c,
                        None => f.transport.connect(&h, f.timeouts).await.map_err(|e| e.to_string())?,
                    };
                    let (req, tx, label) = (with_service(&req, unit), tx.clone(), label(unit));
                    streams.push(async move {
                        let r = super::fleet::stream_logs(&mut c, &req, follow, &label, &tx).await;
                        c.close().await;
                        r
                    });
                }
                futures_util::future::join_all(streams).await.into_iter().collect::<Result<(), String>>()
            }
        })
        .await
}

fn with_service(req: &Request, unit: &str) -> Request {
    match req {
        Request::Logs { lines, since_ms, follow, .. } => {
            Request::Logs { service: unit.to_string(), lines: *lines, since_ms: *since_ms, follow: *follow }
        }
        other => other.clone(),
    }
}

/// Lines from many sources merged by time; each source's lines stay in the
/// order it sent them, even where its clock went back.
pub fn merge(batches: Vec<Batch>) -> Vec<(String, LogLine)> {
    let mut sources: BTreeMap<String, std::collections::VecDeque<LogLine>> = BTreeMap::new();
    for (label, lines) in batches {
        sources.entry(label).or_default().extend(lines);
    }
    let mut heap: BinaryHeap<Reverse<(u64, String)>> = BinaryHeap::new();
    for (label, q) in &sources {
        if let Some(l) = q.front() {
            heap.push(Reverse((l.at_ms, label.clone())));
        }
    }
    let mut out = Vec::new();
    while let Some(Reverse((_, label))) = heap.pop() {
        let q = sources.get_mut(&label).expect("a queued source");
        let line = q.pop_front().expect("a queued line");
        if let Some(next) = q.front() {
            heap.push(Reverse((next.at_ms, label.clone())));
        }
        out.push((label, line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(at_ms: u64, text: &str) -> LogLine {
        LogLine { at_ms, text: text.into() }
    }

    #[test]
    fn lines_sharing_a_timestamp_keep_their_host_order_and_hosts_merge_by_time() {
        let tb = vec![l(5, "Traceback (most recent call last):"), l(5, "  File \"app.py\""), l(5, "ValueError: x")];
        let got = merge(vec![("h2".into(), vec![l(1, "h2 first"), l(9, "h2 last")]), ("h1".into(), tb)]);
        let texts: Vec<&str> = got.iter().map(|(_, l)| l.text.as_str()).collect();
        assert_eq!(
            texts,
            ["h2 first", "Traceback (most recent call last):", "  File \"app.py\"", "ValueError: x", "h2 last"]
        );
    }

    #[test]
    fn a_host_whose_clock_went_back_keeps_its_order() {
        let got = merge(vec![("h1".into(), vec![l(10, "a"), l(3, "b"), l(11, "c")]), ("h2".into(), vec![l(4, "x")])]);
        let texts: Vec<&str> = got.iter().map(|(_, l)| l.text.as_str()).collect();
        let pos = |t: &str| texts.iter().position(|x| *x == t).unwrap();
        assert!(pos("a") < pos("b") && pos("b") < pos("c"), "{texts:?}");
        assert_eq!(texts.len(), 4);
    }
}

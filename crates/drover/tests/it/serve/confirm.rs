//! Actions from the page ask first: apply, drain (with a reason, written to
//! the audit log with the action) and rollouts; cancelling sends nothing.
//! A drained host's stopped services read `drained`, never `failing`.
//! Simulated hosts running the real agent code.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{rt, simulated, until, Browser, Server};

/// The confirmation dialog, once open: its question.
async fn dialog(b: &Browser) -> String {
    until("the confirmation dialog", Duration::from_secs(10), || async {
        let d = b.c().find(Locator::Css("dialog#confirm[open]")).await.ok()?;
        d.find(Locator::Css("#confirm-text")).await.ok()?.text().await.ok()
    })
    .await
}

async fn click(b: &Browser, css: &str) {
    until(&format!("a click on {css}"), Duration::from_secs(10), || async {
        b.c().find(Locator::Css(css)).await.ok()?.click().await.ok()
    })
    .await;
}

async fn closed(b: &Browser) {
    let open = b.c().find_all(Locator::Css("dialog#confirm[open]")).await.unwrap();
    assert!(open.is_empty(), "the dialog closed");
}

#[test]
fn apply_drain_and_rollout_ask_first_cancel_sends_nothing_and_a_drain_reason_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 2);
    let db = proj.join(".drover/state.db");
    let store = drover_state::Store::open(&db).unwrap();
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);
    let audited =
        |cmd: &str| store.audit_log(100).unwrap().into_iter().filter(|a| a.command == cmd).collect::<Vec<_>>();
    let runs = || store.runs(100).unwrap().len();
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        until("s2's cell", Duration::from_secs(30), || b.cell_state("s2")).await;
        b.c().goto(&srv.url("/#/host/s2")).await.unwrap();

        // Apply: asked, cancelled, nothing happens.
        let before = runs();
        click(&b, "#do-apply").await;
        let q = dialog(&b).await;
        assert!(q.contains("Apply") && q.contains("s2"), "{q}");
        assert!(b.c().find(Locator::Css("#confirm-reason-row")).await.unwrap().attr("hidden").await.unwrap().is_some());
        click(&b, "#confirm-cancel").await;
        closed(&b).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(audited("serve:apply").is_empty(), "a cancelled apply is not even audited");
        assert_eq!(runs(), before, "and starts no run");
        // Confirmed, it runs.
        click(&b, "#do-apply").await;
        dialog(&b).await;
        click(&b, "#confirm-ok").await;
        closed(&b).await;
        until("the apply run by `local`", Duration::from_secs(30), || async {
            store.runs(100).unwrap().into_iter().find(|r| r.command == "apply" && r.user == "local")
        })
        .await;
        assert_eq!(audited("serve:apply").len(), 1);

        // Drain: asks why; no reason, no confirming; cancelled, nothing.
        click(&b, "#do-drain").await;
        let q = dialog(&b).await;
        assert!(q.contains("Drain s2"), "{q}");
        let ok = b.c().find(Locator::Css("#confirm-ok")).await.unwrap();
        assert!(!ok.is_enabled().await.unwrap(), "no reason typed: confirm is disabled");
        click(&b, "#confirm-cancel").await;
        closed(&b).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(audited("serve:drain").is_empty());
        assert!(store.drained().unwrap().is_empty(), "a cancelled drain drains nothing");
        click(&b, "#do-drain").await;
        dialog(&b).await;
        let reason = b.c().find(Locator::Css("#confirm-reason")).await.unwrap();
        reason.send_keys("kernel upgrade, ticket 42").await.unwrap();
        assert!(ok.is_enabled().await.unwrap());
        click(&b, "#confirm-ok").await;
        let st = until("s2 drained in the grid", Duration::from_secs(30), || async {
            b.c().goto(&srv.url("/#/")).await.ok()?;
            b.cell_state("s2").await.filter(|s| s == "drained")
        })
        .await;
        assert_eq!(st, "drained");
        // Its services are stopped on purpose: drained, not failing.
        b.c().goto(&srv.url("/#/host/s2")).await.unwrap();
        let health = until("s2's services", Duration::from_secs(10), || async {
            let cells = b.c().find_all(Locator::Css("#services td.health")).await.ok()?;
            let mut out = Vec::new();
            for c in cells {
                out.push(c.text().await.ok()?);
            }
            (!out.is_empty()).then_some(out)
        })
        .await;
        assert!(health.iter().all(|h| h == "drained"), "{health:?}");
        let page = b.c().find(Locator::Css("#host")).await.unwrap().text().await.unwrap();
        assert!(!page.contains("failing"), "{page}");
        assert!(page.contains("kernel upgrade, ticket 42"), "the reason is shown: {page}");

        // A rollout: asked; cancelled, none starts; confirmed, it does.
        b.c().goto(&srv.url("/#/")).await.unwrap();
        click(&b, "#ro-start").await;
        let q = dialog(&b).await;
        assert!(q.contains("rollout") && q.contains("all hosts"), "{q}");
        click(&b, "#confirm-cancel").await;
        closed(&b).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(store.rollouts(1).unwrap().is_empty(), "a cancelled rollout never starts");
        assert!(audited("serve:rollout-start").is_empty());
        click(&b, "#ro-start").await;
        dialog(&b).await;
        click(&b, "#confirm-ok").await;
        until("the rollout recorded", Duration::from_secs(30), || async {
            store.rollouts(1).unwrap().into_iter().next()
        })
        .await;
        b.close().await;
    });
    let drains = audited("serve:drain");
    assert_eq!(drains.len(), 1, "{drains:#?}");
    assert_eq!(
        (drains[0].user.as_str(), drains[0].args.as_str()),
        ("local", "s2 --reason 'kernel upgrade, ticket 42'")
    );
    let marks = store.drained().unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].0, "s2");
    assert!(marks[0].2.contains("kernel upgrade, ticket 42") && marks[0].2.contains("local"), "{marks:?}");
    assert_eq!(audited("serve:rollout-start").len(), 1);
}

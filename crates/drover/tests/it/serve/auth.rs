//! Who may act: only an operator token with the CSRF value, named in the
//! audit log.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{get_json, http, quick, rt, until, Browser, Server};
use crate::support::Fleet;

#[test]
fn only_an_operator_token_with_the_csrf_value_can_act_and_the_audit_log_names_it() {
    let f = Fleet::new("sv-auth", 2);
    quick(&f, "");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Not loopback without tokens: refused at start, saying what to do.
    let r = f.drover(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("without --token-file"), "{}", r.stderr);
    let tokens = f.project().join("tokens");
    std::fs::write(
        &tokens,
        "# name role token\nvera viewer vvvvvvvvvvvvvvvvvvvv\notto operator oooooooooooooooooooo\n",
    )
    .unwrap();
    // A bad token file names the line.
    let bad = f.project().join("bad-tokens");
    std::fs::write(&bad, "vera boss vvvvvvvvvvvvvvvvvvvv\n").unwrap();
    let r = f.drover(&["serve", "--listen", "127.0.0.1:0", "--token-file", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad-tokens:1: unknown role `boss`"), "{}", r.stderr);

    let srv = Server::start(&f, &["--token-file", tokens.to_str().unwrap(), "--check-every", "2s"]);
    let (code, _) = http(&srv.addr, "GET", "/api/status", &[], "");
    assert_eq!(code, 401, "no token, no data");
    let viewer = [("Authorization", "Bearer vvvvvvvvvvvvvvvvvvvv")];
    let operator = [("Authorization", "Bearer oooooooooooooooooooo")];
    let vs = get_json(&srv.addr, "/api/session", &viewer);
    assert_eq!(vs["role"], "viewer");
    let body = r#"{"hosts":"h2"}"#;
    let json = ("Content-Type", "application/json");
    let (code, msg) = http(
        &srv.addr,
        "POST",
        "/api/action/drain",
        &[viewer[0], json, ("X-Drover-CSRF", vs["csrf"].as_str().unwrap())],
        body,
    );
    assert_eq!(code, 403, "a viewer cannot act: {msg}");
    let os = get_json(&srv.addr, "/api/session", &operator);
    let (code, msg) = http(&srv.addr, "POST", "/api/action/drain", &[operator[0], json], body);
    assert_eq!(code, 403, "no CSRF value, no action: {msg}");
    let (code, msg) = http(
        &srv.addr,
        "POST",
        "/api/action/drain",
        &[operator[0], json, ("X-Drover-CSRF", vs["csrf"].as_str().unwrap())],
        body,
    );
    assert_eq!(code, 403, "another token's CSRF value does not count: {msg}");
    assert!(f.drover(&["status", "--json"]).stdout.contains("\"drained\": null"), "nothing was drained yet");
    let csrf = ("X-Drover-CSRF", os["csrf"].as_str().unwrap());
    let (code, msg) = http(&srv.addr, "POST", "/api/action/rollout-abort", &[operator[0], json, csrf], "{}");
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("no rollout in progress"), "the CLI's reason is passed on: {msg}");
    let (code, msg) = http(&srv.addr, "POST", "/api/action/reboot", &[operator[0], json, csrf], "{}");
    assert_eq!(code, 404, "{msg}");
    assert!(msg.contains("rollout-start"), "the known actions are listed: {msg}");

    // The operator acts from the page: the host page's drain button.
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/login?token=oooooooooooooooooooo")).await.unwrap();
        until("h2's cell", Duration::from_secs(30), || b.cell_state("h2")).await;
        b.c().goto(&srv.url("/#/host/h2")).await.unwrap();
        // (A live update may redraw the host page between find and click.)
        until("a click on the drain button", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("#do-drain")).await.ok()?.click().await.ok()
        })
        .await;
        // It asks why first.
        let reason = until("the reason field", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("dialog#confirm[open] #confirm-reason")).await.ok()
        })
        .await;
        reason.send_keys("disk swap").await.unwrap();
        b.c().find(Locator::Css("#confirm-ok")).await.unwrap().click().await.unwrap();
        b.c().goto(&srv.url("/#/")).await.unwrap();
        let st = until("h2 drained", Duration::from_secs(60), || async {
            b.cell_state("h2").await.filter(|s| s == "drained")
        })
        .await;
        assert_eq!(st, "drained");
        b.close().await;
    });
    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let audit = store.audit_log(50).unwrap();
    assert!(
        audit.iter().any(|a| a.user == "otto" && a.command == "serve:drain" && a.args == "h2 --reason 'disk swap'"),
        "{audit:#?}"
    );
    assert!(!audit.iter().any(|a| a.user == "vera"), "the refused viewer did nothing: {audit:#?}");
    assert_eq!(store.drained().unwrap().iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["h2"]);
}

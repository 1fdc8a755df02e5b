//! The dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/install-deps.sh --test`),
//! driven over WebDriver: sign in with the token, see the cluster, create a
//! workflow through the form (the Validate step lists the problems of a bad
//! table, then passes), watch it reach `running` live without a reload, and
//! find a disabled action that says why, then click the lifecycle through:
//! verify, switch reads, switch traffic, reverse, switch, complete, each
//! destructive step confirmed in its dialog. Then an import from an
//! "external" mariadbd through the same page: validate (the view is a
//! warning with its fix), create, see its kind and the notice about
//! writing through the gate, also in the switch confirmation. Screenshots go to
//! `target/dashboard/`; a failing step saves `failure.png` there.

mod common;

use common::Cluster;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_driver() -> Driver {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is missing: run scripts/install-deps.sh --test (chromium, chromium-driver)");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1000", "--hide-scrollbars", "--force-device-scale-factor=1"]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("start chromium")
}

type Step<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Polls a JavaScript expression until it is truthy; returns its value.
async fn until(b: &Client, what: &str, js: &str, within: Duration) -> Step<serde_json::Value> {
    let deadline = Instant::now() + within;
    let script = format!("return ({js});");
    loop {
        let v = b.execute(&script, vec![]).await.map_err(err(what))?;
        let truthy = match &v {
            serde_json::Value::Null | serde_json::Value::Bool(false) => false,
            serde_json::Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what} ({js})"));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn shot(b: &Client, name: &str) -> Step<PathBuf> {
    let png = b.screenshot().await.map_err(err("screenshot"))?;
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).map_err(err("writing the screenshot"))?;
    Ok(path)
}

/// Clicks; retried when the page replaced the element in between (live
/// updates re-render parts of the page).
async fn click(b: &Client, css: &str) -> Step<()> {
    let mut last = String::new();
    for _ in 0..5 {
        let r = match b.find(Locator::Css(css)).await {
            Ok(e) => {
                // Centre it first: at the top edge the sticky header would
                // take the click.
                if let Ok(arg) = serde_json::to_value(&e) {
                    let _ = b
                        .execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg])
                        .await;
                }
                e.click().await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(()),
            // Re-rendered, or covered for a moment (a toast, the header):
            // find it again.
            Err(e)
                if e.to_string().contains("stale element")
                    || e.to_string().contains("click intercepted") =>
            {
                last = e.to_string()
            }
            Err(e) => return Err(format!("{css}: {e}")),
        }
    }
    Err(format!("{css}: {last}"))
}

async fn type_into(b: &Client, css: &str, text: &str) -> Step<()> {
    let e = b.find(Locator::Css(css)).await.map_err(err(css))?;
    e.clear().await.map_err(err(css))?;
    e.send_keys(text).await.map_err(err(css))
}

async fn tick(b: &Client, table: &str, on: bool) -> Step<()> {
    let css = format!("#wf-tables input[name=table][value=\"{table}\"]");
    let e = b.find(Locator::Css(&css)).await.map_err(err(&css))?;
    if e.is_selected().await.map_err(err(&css))? != on {
        e.click().await.map_err(err(&css))?;
    }
    Ok(())
}

async fn wait_state(b: &Client, state: &str) -> Step<()> {
    until(
        b,
        state,
        &format!("document.querySelector('#wf-state .pill').dataset.state === '{state}'"),
        Duration::from_secs(90),
    )
    .await
    .map(|_| ())
}

/// Waits until the page shows the streams caught up (lag of at most 1 s):
/// switching refuses while they are not.
async fn caught_up(b: &Client) -> Step<()> {
    until(
        b,
        "the streams to catch up",
        "/^[01]s$/.test(document.querySelector('[data-stat=\"Max lag\"] .stat-value').textContent)",
        Duration::from_secs(90),
    )
    .await
    .map(|_| ())
}

/// Clicks an action, checks that it asks first, and confirms (typing the
/// workflow's name where that is required).
async fn confirmed(b: &Client, button: &str, name: Option<&str>) -> Step<()> {
    until(
        b,
        &format!("{button} enabled"),
        &format!("!document.querySelector('button[data-button={button}]').disabled"),
        Duration::from_secs(30),
    )
    .await?;
    click(b, &format!("button[data-button={button}]")).await?;
    until(
        b,
        "the confirmation",
        "document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    if let Some(n) = name {
        type_into(b, "#confirm-name", n).await?;
    }
    until(
        b,
        "Confirm enabled",
        "!document.querySelector('#confirm-ok').disabled",
        Duration::from_secs(5),
    )
    .await?;
    click(b, "#confirm-ok").await?;
    until(
        b,
        "the dialog to close",
        "!document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    Ok(())
}

async fn journey(b: &Client, base: &str, token: &str) -> Step<()> {
    b.goto(&format!("{base}/")).await.map_err(err("open"))?;

    // Sign in: a wrong token is refused, the right one is kept.
    until(
        b,
        "the sign-in form",
        "document.querySelector('#token-input')",
        Duration::from_secs(10),
    )
    .await?;
    type_into(b, "#token-input", "not-the-token").await?;
    click(b, "#token-submit").await?;
    until(
        b,
        "the refusal",
        "document.querySelector('#token-error').textContent.includes('refused')",
        Duration::from_secs(10),
    )
    .await?;
    shot(b, "login.png").await?;
    type_into(b, "#token-input", token).await?;
    click(b, "#token-submit").await?;

    // The cluster: both keyspaces, every tablet healthy.
    until(
        b,
        "the cluster view",
        "document.querySelectorAll('.keyspace').length === 2",
        Duration::from_secs(20),
    )
    .await?;
    let healthy = b
        .execute(
            "return [document.querySelectorAll('.dot.ok').length, document.querySelectorAll('.dot.bad').length]",
            vec![],
        )
        .await
        .map_err(err("health"))?;
    if healthy != json!([3, 0]) {
        return Err(format!(
            "expected 3 healthy tablets and no unhealthy one, got {healthy}"
        ));
    }
    let stored = b
        .execute("return localStorage.getItem('keyshift.token')", vec![])
        .await
        .map_err(err("token storage"))?;
    if stored != json!(token) {
        return Err("the token was not kept".into());
    }
    until(
        b,
        "live updates",
        "document.querySelector('#live').dataset.state === 'live'",
        Duration::from_secs(10),
    )
    .await?;
    shot(b, "cluster.png").await?;

    // New workflow: a table without a VSchema in the target is reported.
    click(b, "a[data-nav=new]").await?;
    until(
        b,
        "the table picker",
        "document.querySelector('#wf-tables input[value=product]')",
        Duration::from_secs(20),
    )
    .await?;
    type_into(b, "#wf-name", "move1").await?;
    let target = b
        .execute("return document.querySelector('#wf-target').value", vec![])
        .await
        .map_err(err("target"))?;
    if target != json!("customer") {
        return Err(format!(
            "the target should default to the sharded keyspace, got {target}"
        ));
    }
    tick(b, "customer", true).await?;
    tick(b, "product", true).await?;
    let create_disabled = b
        .execute(
            "return document.querySelector('#wf-create').disabled",
            vec![],
        )
        .await
        .map_err(err("create button"))?;
    if create_disabled != json!(true) {
        return Err("Create must wait for a passing validation".into());
    }
    click(b, "#wf-validate").await?;
    until(
        b,
        "the findings",
        "document.querySelector('.finding[data-table=product]')",
        Duration::from_secs(30),
    )
    .await?;
    let text = b
        .execute(
            "return document.querySelector('#findings').innerText",
            vec![],
        )
        .await
        .map_err(err("findings"))?;
    if !text
        .as_str()
        .is_some_and(|t| t.contains("VSchema") && t.contains("Fix"))
    {
        return Err(format!(
            "the findings should explain the VSchema problem and its fix: {text}"
        ));
    }
    shot(b, "new-workflow-findings.png").await?;

    // Fix it: move customer and corder instead; validation passes.
    tick(b, "product", false).await?;
    tick(b, "corder", true).await?;
    click(b, "#wf-validate").await?;
    until(
        b,
        "a passing validation",
        "document.querySelector('.validation-ok')",
        Duration::from_secs(30),
    )
    .await?;
    until(
        b,
        "Create enabled",
        "!document.querySelector('#wf-create').disabled",
        Duration::from_secs(5),
    )
    .await?;
    shot(b, "new-workflow-valid.png").await?;
    click(b, "#wf-create").await?;

    // The workflow page follows the copy live: no reload.
    until(
        b,
        "the workflow page",
        "document.querySelector('#workflow[data-name=move1] #wf-state')",
        Duration::from_secs(30),
    )
    .await?;
    b.execute("window.__sameDocument = true; return true", vec![])
        .await
        .map_err(err("marker"))?;
    until(
        b,
        "the running state",
        "document.querySelector('#wf-state .pill').dataset.state === 'running'",
        Duration::from_secs(120),
    )
    .await?;
    let same = b
        .execute("return window.__sameDocument === true", vec![])
        .await
        .map_err(err("marker"))?;
    if same != json!(true) {
        return Err("the page reloaded instead of updating live".into());
    }
    until(
        b,
        "the copy progress at 100%",
        "[...document.querySelectorAll('#table-progress .figures')].length === 2 && [...document.querySelectorAll('#table-progress .figures')].every(e => e.textContent.includes('100%'))",
        Duration::from_secs(30),
    )
    .await?;

    // A disabled action says why.
    let start = b
        .execute(
            "const b = document.querySelector('button[data-button=start]'); return [b.disabled, b.dataset.reason || '', b.parentElement.querySelector('.why') ? b.parentElement.querySelector('.why').textContent : '']",
            vec![],
        )
        .await
        .map_err(err("start button"))?;
    let ok = start[0] == json!(true)
        && start[1]
            .as_str()
            .is_some_and(|r| r.contains("running") && r.contains("stopped"))
        && start[1] == start[2];
    if !ok {
        return Err(format!("Start should be disabled with its reason: {start}"));
    }
    let stop_enabled = b
        .execute(
            "return !document.querySelector('button[data-button=stop]').disabled",
            vec![],
        )
        .await
        .map_err(err("stop button"))?;
    if stop_enabled != json!(true) {
        return Err("Stop should be enabled while running".into());
    }
    // Hover it so the screenshot shows the reason.
    let start_btn = b
        .find(Locator::Css("button[data-button=start]"))
        .await
        .map_err(err("start"))?;
    use fantoccini::actions::InputSource;
    b.perform_actions(
        fantoccini::actions::MouseActions::new("mouse".to_string()).then(
            fantoccini::actions::PointerAction::MoveToElement {
                element: start_btn,
                duration: None,
                x: 0.0,
                y: 0.0,
            },
        ),
    )
    .await
    .map_err(err("hover"))?;
    until(b, "the tooltip", "getComputedStyle(document.querySelector('button[data-button=start]').parentElement.querySelector('.why')).opacity === '1'", Duration::from_secs(5)).await?;
    shot(b, "workflow.png").await?;

    // Stop through a button; the state changes live, and the list shows it.
    click(b, "button[data-button=stop]").await?;
    until(
        b,
        "the stopped state",
        "document.querySelector('#wf-state .pill').dataset.state === 'stopped'",
        Duration::from_secs(30),
    )
    .await?;
    // Destructive actions ask first: cancel needs the name typed.
    click(b, "button[data-button=cancel]").await?;
    until(
        b,
        "the confirmation",
        "document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    let ok_disabled = b
        .execute(
            "return document.querySelector('#confirm-ok').disabled",
            vec![],
        )
        .await
        .map_err(err("confirm"))?;
    if ok_disabled != json!(true) {
        return Err("Cancel must need the workflow's name typed".into());
    }
    shot(b, "confirm-cancel.png").await?;
    click(b, "#confirm-cancel").await?;
    until(
        b,
        "the dialog to close",
        "!document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    let state = b
        .execute(
            "return document.querySelector('#wf-state .pill').dataset.state",
            vec![],
        )
        .await
        .map_err(err("state"))?;
    if state != json!("stopped") {
        return Err(format!(
            "dismissing the dialog must do nothing, state is {state}"
        ));
    }
    click(b, "button[data-button=start]").await?;
    until(
        b,
        "running again",
        "document.querySelector('#wf-state .pill').dataset.state === 'running'",
        Duration::from_secs(60),
    )
    .await?;
    // Verify, then the traffic switches, each confirmed in its dialog.
    caught_up(b).await?;
    click(b, "button[data-button=verify-data]").await?;
    until(
        b,
        "the VDiff report",
        "document.querySelector('#vdiff-report') && document.querySelector('#vdiff-report').textContent.includes('Target matches the source')",
        Duration::from_secs(120),
    )
    .await?;
    caught_up(b).await?;
    confirmed(b, "switch-reads", None).await?;
    wait_state(b, "switched_replicas").await?;
    caught_up(b).await?;
    confirmed(b, "switch-traffic", None).await?;
    wait_state(b, "switched_primaries").await?;
    shot(b, "workflow-switched.png").await?;
    confirmed(b, "reverse-traffic", None).await?;
    until(
        b,
        "traffic back on the source",
        "['running', 'switched_replicas'].includes(document.querySelector('#wf-state .pill').dataset.state)",
        Duration::from_secs(60),
    )
    .await?;
    caught_up(b).await?;
    confirmed(b, "switch-traffic", None).await?;
    wait_state(b, "switched_primaries").await?;
    confirmed(b, "complete", Some("move1")).await?;
    wait_state(b, "completed").await?;
    let done = b
        .execute(
            "return [...document.querySelectorAll('#actions button')].every(x => x.disabled)",
            vec![],
        )
        .await
        .map_err(err("actions"))?;
    if done != json!(true) {
        return Err("a completed workflow must offer no action".into());
    }
    b.set_window_size(1440, 2600).await.map_err(err("resize"))?;
    shot(b, "workflow-completed-full.png").await?;
    b.set_window_size(1440, 1000).await.map_err(err("resize"))?;

    click(b, "a[data-nav=workflows]").await?;
    until(
        b,
        "the list",
        "document.querySelector('#workflows-table tr[data-workflow=move1] .pill')",
        Duration::from_secs(20),
    )
    .await?;
    shot(b, "workflows.png").await?;
    Ok(())
}

/// The password of the external server's user: distinctive, so that
/// finding it in a log means it leaked.
const IMPORT_PASSWORD: &str = "Dash-Imp0rt-9b3e";

/// An "external" mariadbd keyshift does not manage: database `shop` with a
/// table and a view, and a user for keyshift.
async fn external_server() -> keyshift_testkit::TestMysqld {
    use mysql_async::prelude::*;
    let ext = keyshift_testkit::TestMysqld::start()
        .await
        .expect("external mariadbd");
    let mut c = ext.conn().await.expect("connect to the external server");
    for sql in [
        "CREATE DATABASE shop".to_string(),
        "CREATE TABLE shop.supplier (supplier_id BIGINT NOT NULL, name VARCHAR(128), PRIMARY KEY (supplier_id)) ENGINE=InnoDB".into(),
        "INSERT INTO shop.supplier VALUES (1, 'Acme'), (2, 'Globex')".into(),
        "CREATE VIEW shop.v_supplier_names AS SELECT name FROM shop.supplier".into(),
    ] {
        c.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for host in ["%", "localhost", "127.0.0.1"] {
        c.query_drop(format!(
            "CREATE USER 'importer'@'{host}' IDENTIFIED BY '{IMPORT_PASSWORD}'"
        ))
        .await
        .expect("create user");
        c.query_drop(format!(
            "GRANT ALL PRIVILEGES ON *.* TO 'importer'@'{host}'"
        ))
        .await
        .expect("grant");
    }
    let _ = c.disconnect().await;
    ext
}

/// "New workflow" → "Import from an external server": validation lists
/// the view as a warning (with its fix) and passes; Create leads to the
/// import's page, which shows its kind and the notice about writing
/// through the gate, and so does the switch-traffic confirmation.
async fn import_journey(b: &Client, ext_port: u16) -> Step<()> {
    click(b, "a[data-nav=new]").await?;
    until(
        b,
        "the kind choice",
        "document.querySelector('#wf-kind-import')",
        Duration::from_secs(20),
    )
    .await?;
    click(b, "#wf-kind-import").await?;
    until(
        b,
        "the import form",
        "document.querySelector('#imp-from') && document.querySelector('#wf-target option')",
        Duration::from_secs(20),
    )
    .await?;
    let pw_type = b
        .execute(
            "return document.querySelector('#imp-password').type",
            vec![],
        )
        .await
        .map_err(err("password field"))?;
    if pw_type != json!("password") {
        return Err(format!("the password field is of type {pw_type}"));
    }
    type_into(b, "#wf-name", "imp1").await?;
    type_into(
        b,
        "#imp-from",
        &format!("mysql://importer@127.0.0.1:{ext_port}/shop"),
    )
    .await?;
    type_into(b, "#imp-password", IMPORT_PASSWORD).await?;
    // Into the unsharded keyspace: no VSchema needed for the new table.
    b.execute(
        "const s = document.querySelector('#wf-target'); s.value = 'commerce'; s.dispatchEvent(new Event('change')); return s.value",
        vec![],
    )
    .await
    .map_err(err("target"))?;
    click(b, "#wf-validate").await?;
    until(
        b,
        "the import's findings",
        "document.querySelector('.validation-ok') && document.querySelector('.finding[data-check=views][data-severity=warning]')",
        Duration::from_secs(60),
    )
    .await?;
    let text = b
        .execute(
            "return document.querySelector('#findings').innerText",
            vec![],
        )
        .await
        .map_err(err("findings"))?;
    let area = b
        .execute(
            "return document.querySelector('#validation').innerText",
            vec![],
        )
        .await
        .map_err(err("validation"))?;
    if area.as_str().is_none_or(|t| t.contains("null")) {
        return Err(format!("the validation shows stray text: {area}"));
    }
    if !text.as_str().is_some_and(|t| {
        t.to_lowercase().contains("warning") && t.contains("v_supplier_names") && t.contains("Fix")
    }) {
        return Err(format!(
            "the warning should name the view and its fix: {text}"
        ));
    }
    until(
        b,
        "Create enabled",
        "!document.querySelector('#wf-create').disabled",
        Duration::from_secs(5),
    )
    .await?;
    shot(b, "import-validated.png").await?;
    click(b, "#wf-create").await?;
    until(
        b,
        "the import's page",
        "document.querySelector('#workflow[data-name=imp1] #wf-state') && document.querySelector('#wf-kind[data-kind=import]')",
        Duration::from_secs(60),
    )
    .await?;
    until(
        b,
        "the switch notice",
        "document.querySelector('#wf-switch-notice') && document.querySelector('#wf-switch-notice').textContent.includes('write through the gate')",
        Duration::from_secs(10),
    )
    .await?;
    wait_state(b, "running").await?;
    // Switching primaries says plainly what it means before confirming.
    until(
        b,
        "switch-traffic enabled",
        "!document.querySelector('button[data-button=switch-traffic]').disabled",
        Duration::from_secs(30),
    )
    .await?;
    click(b, "button[data-button=switch-traffic]").await?;
    until(
        b,
        "the confirmation with the notice",
        "document.querySelector('#confirm').open && document.querySelector('#confirm-notice') && document.querySelector('#confirm-notice').textContent.includes('split brain')",
        Duration::from_secs(5),
    )
    .await?;
    shot(b, "import-confirm-switch.png").await?;
    let body = b
        .execute(
            "return document.querySelector('#confirm-body').innerText + ' ' + document.querySelector('#wf-kind').innerText",
            vec![],
        )
        .await
        .map_err(err("dialog text"))?;
    if body.as_str().is_none_or(|t| t.contains("null")) {
        return Err(format!("the dialog shows stray text: {body}"));
    }
    click(b, "#confirm-cancel").await?;
    until(
        b,
        "the dialog to close",
        "!document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    // The replica switch asks without it.
    click(b, "button[data-button=switch-reads]").await?;
    until(
        b,
        "the replica confirmation",
        "document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    let notice = b
        .execute("return !!document.querySelector('#confirm-notice')", vec![])
        .await
        .map_err(err("notice"))?;
    click(b, "#confirm-cancel").await?;
    if notice != json!(false) {
        return Err("switching reads only must not warn about writes".into());
    }
    until(
        b,
        "the dialog to close",
        "!document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;

    // The list shows the kind of each workflow.
    click(b, "a[data-nav=workflows]").await?;
    until(
        b,
        "the import in the list",
        "document.querySelector('#workflows-table tr[data-workflow=imp1] [data-kind=import]') && document.querySelector('#workflows-table tr[data-workflow=move1] [data-kind=move_tables]')",
        Duration::from_secs(20),
    )
    .await?;
    shot(b, "workflows-with-import.png").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_creates_and_follows_a_workflow_in_chromium() {
    let ext = external_server().await;
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let (base, token) = c.api();
    let driver = start_driver().await;
    let b = browser(&driver).await;
    let mut r = journey(&b, &base, &token).await;
    if r.is_ok() {
        r = import_journey(&b, ext.port()).await;
    }
    if let Err(e) = &r {
        let saved = shot(&b, "failure.png").await;
        let _ = b.clone().close().await;
        panic!("{e}\nscreenshot: {saved:?}");
    }
    let _ = b.close().await;

    // What the browser did is in the record, as the API's doing.
    let out = c.ok(&["workflow", "show", "move1", "--format", "json"]);
    let w: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(w["phases"][0]["by"], "api", "{w}");
    let imp = c.ok(&["workflow", "show", "imp1", "--format", "json"]);
    let imp: serde_json::Value = serde_json::from_str(&imp).expect("json");
    assert_eq!(imp["type"], "import", "{imp}");
    assert_eq!(imp["phases"][0]["by"], "api", "{imp}");
    let log = std::fs::read_to_string(c.data_dir().join("keyshift.log")).unwrap_or_default();
    assert!(
        !log.contains(IMPORT_PASSWORD),
        "the node's log has the password"
    );
    for state in [
        "stopped",
        "switched_replicas",
        "switched_primaries",
        "completed",
    ] {
        assert!(
            w["phases"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["state"] == state && x["by"] == "api")),
            "{state} by the api missing: {w}"
        );
    }
}

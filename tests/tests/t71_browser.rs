//! The web UI in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, which `.ci/run` installs) driven over WebDriver
//! by fantoccini, against a real master and worker. An operator finds a
//! failed pipeline, reads the failed unit's error, retries it and sees it
//! succeed without reloading the page; another rolls the master back from
//! the snapshots page. Screenshots of each page go to
//! `target/debug/browser-artifacts/`.
//!
//! Skips, saying why, only when chromium or chromedriver is not installed.

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use taskmaster_tests::*;

/// Bound of every wait in the browser or for the master.
const WAIT: Duration = Duration::from_secs(60);

/// [`browser`], or None after saying why the test is skipped.
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    browser().inspect_err(|why| println!("skipped: {why}")).ok()
}

/// The browser and driver binaries, or why the test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
    };
    let chromium = find(&["chromium", "chromium-browser"])
        .ok_or("chromium is not installed (apt-get install chromium)")?;
    let driver = find(&["chromedriver"])
        .ok_or("chromedriver is not installed (apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

/// A chromedriver process on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(driver: &Path, log: &Path) -> Driver {
        let port = free_port();
        // Its own process group, so that dropping it also ends the
        // browsers it started, even when a test fails halfway.
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browsers it started.
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) with a negative pid signals that process group;
        // no memory is shared.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A headless session with a fresh profile.
async fn session(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        // Prompts stay open until the test answers them.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// Where screenshots go: `<target>/debug/browser-artifacts`.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` in the browser until it gives Some, up to [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the button of the action `label` (the first one), waits for
/// its confirmation, checks it says `expect`, and accepts it.
async fn click_and_confirm(browser: &Client, label: &str, expect: &str) {
    let selector = format!("button[data-action='{label}']");
    browser
        .find(Locator::Css(&selector))
        .await
        .unwrap_or_else(|e| panic!("no {label} button: {e}"))
        .click()
        .await
        .unwrap();
    let text = eventually("the confirmation", || async {
        browser.get_alert_text().await.ok()
    })
    .await;
    assert!(text.contains(expect), "{text}");
    browser.accept_alert().await.unwrap();
}

/// The text of the first element `css` matches, or None.
async fn text_of(browser: &Client, css: &str) -> Option<String> {
    let element = browser.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn submit(url: &str, file: &Path) -> String {
    let out = tmctl_ok(url, &["submit", file.to_str().unwrap()]);
    out.lines().last().expect("an id line").trim().to_string()
}

fn master_with_http(dir: &Path) -> (MasterProcess, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let master =
        MasterProcess::start_with(&dir.join("data"), "127.0.0.1:0", 5_000, &["--http", &http]);
    (master, format!("http://{http}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_failed_stage_is_read_retried_and_seen_to_succeed_without_a_reload() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (master, web) = master_with_http(tmp.path());
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    write(&tmp.path().join("data/a.txt"), "alpha");
    let file = tmp.path().join("flaky.toml");
    write(
        &file,
        r#"
name = "flaky"
[[groups]]
name = "stage"
command = ["sh", "-c", "if [ ! -f marker ]; then echo \"marker missing in attempt $TM_ATTEMPT\" >&2; exit 3; fi; cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/a.txt"]
unit_bytes = 0
max_attempts = 2
retry_delay = "0"
[[groups]]
name = "after"
command = ["sh", "-c", "cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]
after = ["stage"]
"#,
    );
    let id = submit(&url, &file);
    wait_until("the pipeline to fail", WAIT, || {
        (status_json(&url, &id)["state"] == "failed").then_some(())
    });

    let driver = Driver::start(&chromedriver, &tmp.path().join("chromedriver.log"));
    let rt = runtime();
    rt.block_on(async {
        let browser = session(&driver, &chromium, &tmp.path().join("profile")).await;
        browser.goto(&format!("{web}/pipelines")).await.unwrap();
        screenshot(&browser, "1-pipelines").await;
        // The operator finds the failed pipeline and opens it.
        let row = format!("tr[data-state='failed'][data-pipeline='{id}'] a");
        browser
            .find(Locator::Css(&row))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually("the pipeline page", || async {
            text_of(&browser, "h1").await.filter(|h| h.contains(&id))
        })
        .await;
        screenshot(&browser, "2-pipeline-failed").await;
        let error = text_of(&browser, "#failed pre.error").await.unwrap();
        assert!(
            error.ends_with("marker missing in attempt 1"),
            "the first attempt's error: {error}"
        );
        let errors = text_of(&browser, "#failed").await.unwrap();
        assert!(errors.contains("marker missing in attempt 2"), "{errors}");

        // The unit's page shows its attempts too.
        let unit = format!("a[href='/pipelines/{id}/groups/stage/units/0']");
        browser
            .find(Locator::Css(&unit))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let unit_errors = eventually("the unit page", || async {
            text_of(&browser, "#errors").await
        })
        .await;
        assert!(
            unit_errors.contains("attempt 2") && unit_errors.contains("marker missing"),
            "{unit_errors}"
        );
        let log = text_of(&browser, "#log-stderr").await.unwrap();
        assert_eq!(
            log, "marker missing in attempt 2",
            "the latest attempt's log"
        );
        screenshot(&browser, "3-unit").await;
        browser.back().await.unwrap();
        eventually("the pipeline page again", || async {
            text_of(&browser, "#failed").await
        })
        .await;

        // Fix the cause, retry from the page, and watch it succeed live.
        write(&tmp.path().join("marker"), "");
        browser
            .execute("window.sameDocument = true;", vec![])
            .await
            .unwrap();
        click_and_confirm(&browser, "Retry failed", "Retry every failed unit").await;
        let flash = eventually("the master's answer", || async {
            text_of(&browser, "#flash").await.filter(|t| !t.is_empty())
        })
        .await;
        assert_eq!(flash, "1 failed unit(s) queued again");
        eventually("the state to turn succeeded", || async {
            let state = browser.find(Locator::Css("#state")).await.ok()?;
            (state.attr("data-state").await.ok()?? == "succeeded").then_some(())
        })
        .await;
        let same = browser
            .execute("return window.sameDocument === true;", vec![])
            .await
            .unwrap();
        assert_eq!(same, Value::Bool(true), "the page was not reloaded");
        assert!(
            text_of(&browser, "#no-failed").await.is_some(),
            "no failed unit left"
        );
        screenshot(&browser, "4-pipeline-succeeded").await;

        // The refusal of a second retry is shown as the master's reason.
        click_and_confirm(&browser, "Retry failed", "Retry every failed unit").await;
        let refused = eventually("the refusal", || async {
            text_of(&browser, "#flash")
                .await
                .filter(|t| t.starts_with("Refused"))
        })
        .await;
        assert!(
            refused.contains("no failed unit there to retry"),
            "{refused}"
        );
        screenshot(&browser, "5-refused").await;
        browser.close().await.unwrap();
    });
    drop(master);
}

#[test]
fn rolling_back_from_the_snapshots_page_undoes_a_later_submission() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (master, web) = master_with_http(tmp.path());
    let url = master.url();
    write(&tmp.path().join("data/a.txt"), "alpha");
    let pipeline = |name: &str| {
        let file = tmp.path().join(format!("{name}.toml"));
        write(
            &file,
            &format!(
                "name = \"{name}\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"data/a.txt\"]\n"
            ),
        );
        submit(&url, &file)
    };
    let before = pipeline("before");

    let driver = Driver::start(&chromedriver, &tmp.path().join("chromedriver.log"));
    let rt = runtime();
    let after = rt.block_on(async {
        let browser = session(&driver, &chromium, &tmp.path().join("profile")).await;
        browser.goto(&format!("{web}/snapshots")).await.unwrap();
        browser
            .find(Locator::Css("input[name='note']"))
            .await
            .unwrap()
            .send_keys("before the second")
            .await
            .unwrap();
        click_and_confirm(&browser, "Take snapshot", "Take a snapshot").await;
        let flash = eventually("the snapshot", || async {
            text_of(&browser, "#flash")
                .await
                .filter(|t| t.contains("taken"))
        })
        .await;
        let snapshot = flash.split_whitespace().nth(1).unwrap().to_string();
        // Submitted a moment after the snapshot, by the wall clock.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let after = pipeline("after");

        browser.goto(&format!("{web}/snapshots")).await.unwrap();
        let row = format!("tr[data-snapshot='{snapshot}']");
        let undone = text_of(&browser, &row).await.unwrap();
        assert!(
            undone.contains(&format!("1 pipeline(s) submitted since: {after}")),
            "{undone}"
        );
        screenshot(&browser, "6-snapshots").await;
        click_and_confirm(&browser, "Roll back", &after).await;
        let flash = eventually("the rollback", || async {
            text_of(&browser, "#flash")
                .await
                .filter(|t| t.contains("rolled back"))
        })
        .await;
        assert!(flash.contains(&snapshot), "{flash}");

        browser.goto(&format!("{web}/pipelines")).await.unwrap();
        // The list is there once the page has loaded (goto may return first).
        let list = eventually("the pipelines list", || async {
            text_of(&browser, "#pipelines")
                .await
                .filter(|l| l.contains(&before))
        })
        .await;
        assert!(!list.contains(&after), "{list}");
        screenshot(&browser, "7-after-rollback").await;
        browser.close().await.unwrap();
        after
    });
    assert_eq!(status_json(&url, &before)["state"], "pending");
    let gone = tmctl_err(&url, &["status", &after]);
    assert!(gone.contains("no pipeline"), "{gone}");
    drop(master);
}

#[test]
fn a_browser_logs_in_with_a_token_and_its_clicks_are_audited_as_its_own() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        5_000,
        &["--auth", "--http", &http],
    );
    let web = format!("http://{http}");
    let url = master.url();
    let admin = master.data_dir.join("admin.token");
    let as_admin = [("TASKMASTER_TOKEN_FILE", admin.to_str().unwrap())];
    let made = tmctl_env(
        &url,
        &["token", "create", "--role", "operator", "--name", "otto"],
        &as_admin,
    );
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8(made.stdout).unwrap();
    let token = token.lines().last().unwrap().to_string();
    // No worker: the pipeline waits until it is cancelled.
    write(&tmp.path().join("data/a.txt"), "alpha");
    let file = tmp.path().join("held.toml");
    write(
        &file,
        "name = \"held\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"data/a.txt\"]\n",
    );
    let submitted = tmctl_env(&url, &["submit", file.to_str().unwrap()], &as_admin);
    assert!(submitted.status.success(), "{submitted:?}");
    let id = String::from_utf8(submitted.stdout).unwrap();
    let id = id.lines().last().unwrap().trim().to_string();

    let driver = Driver::start(&chromedriver, &tmp.path().join("chromedriver.log"));
    runtime().block_on(async {
        let browser = session(&driver, &chromium, &tmp.path().join("profile")).await;
        // The page asked for sends the browser to the login, and back.
        browser
            .goto(&format!("{web}/pipelines/{id}"))
            .await
            .unwrap();
        let at = browser.current_url().await.unwrap();
        assert_eq!(at.path(), "/login", "{at}");
        browser
            .find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(&token)
            .await
            .unwrap();
        screenshot(&browser, "8-login").await;
        browser
            .find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually("the pipeline page after the login", || async {
            let at = browser.current_url().await.ok()?;
            (at.path() == format!("/pipelines/{id}")).then_some(())
        })
        .await;
        click_and_confirm(&browser, "Cancel", "Cancel this pipeline?").await;
        eventually("the cancellation", || async {
            text_of(&browser, "#flash")
                .await
                .filter(|t| !t.is_empty() && !t.starts_with("Refused"))
        })
        .await;
        screenshot(&browser, "9-cancelled-after-login").await;
        browser.close().await.unwrap();
    });
    let status = tmctl_env(&url, &["status", &id], &as_admin);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("otto (operator)  cancel"), "{status}");
    drop(master);
}

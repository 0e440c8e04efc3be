//! The HTTP side of a master with `--auth` (issues 24 and 26): the same
//! tokens and roles as gRPC, as a bearer header (scripts, Prometheus) or
//! the cookie of the login page (browsers); each refusal (no token, a
//! wrong and a revoked one, a viewer acting, an operator rolling back, a
//! cookie-carried action from another site), the audit trail naming who
//! clicked, and the start refused beyond loopback without TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::redirect::Policy;
use taskmaster_tests::*;

struct Master {
    process: MasterProcess,
    /// "127.0.0.1:PORT" of the HTTP side.
    host: String,
    web: Http,
    admin: PathBuf,
}

impl Master {
    fn start(dir: &Path) -> Master {
        Master::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra_args: &[&str]) -> Master {
        let host = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["--auth", "--http", &host];
        args.extend_from_slice(extra_args);
        let process = MasterProcess::start_with(&dir.join("data"), "127.0.0.1:0", 30_000, &args);
        let admin = process.data_dir.join("admin.token");
        // Redirects are what is tested: not followed.
        let web = Http::builder()
            .timeout(Duration::from_secs(30))
            .redirect(Policy::none())
            .build()
            .unwrap();
        Master {
            process,
            host,
            web,
            admin,
        }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.web.get(format!("http://{}{path}", self.host))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.web
            .post(format!("http://{}{path}", self.host))
            .header("content-type", "application/x-www-form-urlencoded")
    }

    fn tmctl(&self, token: &Path, args: &[&str]) -> Output {
        tmctl_env(
            &self.process.url(),
            args,
            &[("TASKMASTER_TOKEN_FILE", token.to_str().unwrap())],
        )
    }

    /// A new token of `role` named `name`, as `tmctl token create` printed it.
    fn token(&self, role: &str, name: &str) -> String {
        let out = self.tmctl(
            &self.admin,
            &["token", "create", "--role", role, "--name", name],
        );
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().unwrap().to_string()
    }
}

/// The status and body of an answer.
fn answer(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

fn bearer(request: RequestBuilder, token: &str) -> RequestBuilder {
    request.header("authorization", format!("Bearer {token}"))
}

#[test]
fn t74_the_http_side_checks_tokens_and_roles_as_grpc_does() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Master::start(tmp.path());
    let admin = std::fs::read_to_string(&master.admin)
        .unwrap()
        .trim()
        .to_string();
    let viewer = master.token("viewer", "vera");
    let operator = master.token("operator", "otto");

    // No token: the API says how to present one; a page goes to the login.
    let response = master.get("/api/pipelines").send().unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"taskmaster\""
    );
    let (status, body) = answer(response);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("requires a login"), "{body}");
    let response = master.get("/pipelines?state=failed").send().unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?next=/pipelines%3Fstate%3Dfailed"
    );
    assert_eq!(answer(master.get("/metrics").send().unwrap()).0, 401);
    let (status, login) = answer(master.get("/login").send().unwrap());
    assert_eq!(status, 200);
    assert!(login.contains("name=\"token\""), "{login}");

    // A wrong token, a viewer's reads and refused actions.
    let (status, body) = answer(
        bearer(master.get("/api/pipelines"), "tm_not-a-token")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 401);
    assert!(body.contains("not one this master knows"), "{body}");
    assert_eq!(
        answer(
            bearer(master.get("/api/pipelines"), &viewer)
                .send()
                .unwrap()
        )
        .0,
        200
    );
    let (status, metrics) = answer(bearer(master.get("/metrics"), &viewer).send().unwrap());
    assert_eq!(status, 200);
    assert!(metrics.contains("taskmaster_commits_total"), "{metrics}");
    let (status, body) = answer(
        bearer(master.post("/api/snapshots"), &viewer)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("vera (viewer) may not call POST /api/snapshots")
            && body.contains("operator or admin"),
        "{body}"
    );

    // An operator takes a snapshot but may not roll back; an admin may.
    let (status, body) = answer(
        bearer(master.post("/api/snapshots"), &operator)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let snapshots: serde_json::Value = serde_json::from_str(
        &answer(
            bearer(master.get("/api/snapshots"), &operator)
                .send()
                .unwrap(),
        )
        .1,
    )
    .unwrap();
    let snapshot = snapshots["snapshots"][0]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rollback = format!("/api/snapshots/{snapshot}/rollback");
    let (status, body) = answer(bearer(master.post(&rollback), &operator).send().unwrap());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs the role admin"), "{body}");
    let (status, body) = answer(bearer(master.post(&rollback), &admin).send().unwrap());
    assert_eq!(status, 200, "{body}");

    // The login page: a wrong token is refused on the page; a right one
    // sets a cookie no script can read and goes on to the page asked for.
    let origin = format!("http://{}", master.host);
    let (status, page) = answer(
        master
            .post("/login")
            .header("origin", &origin)
            .body("token=tm_wrong&next=%2Fworkers")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 401);
    assert!(page.contains("not one this master knows"), "{page}");
    let response = master
        .post("/login")
        .header("origin", &origin)
        .body(format!("token={operator}&next=%2Fworkers"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/workers");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let with_cookie = |request: RequestBuilder| request.header("cookie", &cookie);
    let (status, page) = answer(with_cookie(master.get("/workers")).send().unwrap());
    assert_eq!(status, 200);
    assert!(
        page.contains("otto (operator)") && page.contains("action=\"/logout\""),
        "the page names who is logged in and offers to log out: {page}"
    );

    // An action carried by the cookie must come from the master's pages.
    // No worker: it stays pending until cancelled.
    write_file(&tmp.path().join("in.txt"), "x");
    let pipeline = tmp.path().join("held.toml");
    write_file(
        &pipeline,
        "name = \"held\"\n[[groups]]\nname = \"a\"\ncommand = [\"true\"]\ninputs = [\"in.txt\"]\n",
    );
    let operator_file = tmp.path().join("otto.token");
    write_file(&operator_file, &operator);
    let out = master.tmctl(&operator_file, &["submit", pipeline.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The id is submit's last line.
    let id = stdout.lines().last().unwrap().trim().to_string();
    let cancel = format!("/api/pipelines/{id}/cancel");
    for (origin, why) in [
        (None, "no Origin"),
        (Some("http://evil.example"), "another site"),
    ] {
        let mut request = with_cookie(master.post(&cancel));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let (status, body) = answer(request.send().unwrap());
        assert_eq!(status, 403, "{why}: {body}");
        assert!(body.contains("this master's own pages"), "{why}: {body}");
    }
    let (status, body) = answer(
        with_cookie(master.post(&cancel))
            .header("origin", &origin)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");

    // The audit trail names who clicked.
    let out = master.tmctl(&operator_file, &["status", &id]);
    let status_text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        status_text.contains("otto (operator)  cancel"),
        "{status_text}"
    );

    // Logging out forgets the cookie.
    let response = master.post("/logout").send().unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let cleared = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("taskmaster_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // ... and so does the pipeline's page and its JSON.
    let (_, page) = answer(
        with_cookie(master.get(&format!("/pipelines/{id}")))
            .send()
            .unwrap(),
    );
    let history = &page[page.find("id=\"audit\"").expect("a history table")..];
    assert!(
        history.contains("otto (operator)") && history.contains("cancel"),
        "{history}"
    );
    let (_, json) = answer(
        bearer(master.get(&format!("/api/pipelines/{id}")), &viewer)
            .send()
            .unwrap(),
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let actions: Vec<(&str, &str)> = json["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("otto (operator)", "cancel")), "{json}");

    // A revoked token logs its browser out.
    let out = master.tmctl(&master.admin, &["token", "revoke", "otto"]);
    assert!(out.status.success(), "{out:?}");
    let response = with_cookie(master.get("/workers")).send().unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/login?next=/workers");
}

/// Pages and the API count against `--rate-per-identity` as calls do, and
/// a request over it is answered 429 naming the flag after a pause (so a
/// script that asks again at once cannot spin); another identity is not
/// held back by it.
#[test]
fn t74_http_requests_over_the_rate_are_refused_after_a_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Master::start_with(tmp.path(), &["--rate-per-identity", "5"]);
    let viewer = master.token("viewer", "vera");
    let other = master.token("viewer", "otto");
    // A burst of twice the rate is let through; a few more are refused.
    let mut refusal = None;
    for _ in 0..100 {
        let started = std::time::Instant::now();
        let (status, body) = answer(
            bearer(master.get("/api/pipelines"), &viewer)
                .send()
                .unwrap(),
        );
        if status == 429 {
            refusal = Some((started.elapsed(), body));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (took, body) = refusal.expect("a burst over the rate is refused");
    assert!(body.contains("--rate-per-identity"), "{body}");
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );
    let (status, body) = answer(bearer(master.get("/api/pipelines"), &other).send().unwrap());
    assert_eq!(status, 200, "{body}");
}

#[test]
fn t74_http_beyond_loopback_is_refused_without_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let refused = Command::new(bin("taskmaster"))
        .args(["serve", "--listen", "127.0.0.1:0", "--auth"])
        .args(["--http", "0.0.0.0:0", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        stderr.contains("refusing to serve HTTP on 0.0.0.0:0 without TLS")
            && stderr.contains("in clear"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused start touches nothing");
}

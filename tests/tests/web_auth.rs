//! rosey-web's access modes, each with its own process: loopback (open reads, admin needs a
//! configured credential), beyond loopback without a credential (refuses to start), beyond
//! loopback with one (everything needs the login), and with `web.public_read`.

use rosey_tests::web_support::{basic, get, http, start_web, try_start_web};
use rosey_tests::NatsServer;
use serde_json::json;

const PASSWORD: &str = "s3cret pass";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_reads_are_open_and_admin_needs_a_credential() {
    let nats = NatsServer::start();
    let web = start_web(&nats, json!({}));
    for path in [
        "/",
        "/api/current",
        "/metrics",
        "/chart.svg",
        "/api/plugins",
    ] {
        assert_eq!(get(&web, path).await.status, 200, "{path}");
    }
    // No credential configured: administration is off and says why.
    for (method, path) in [
        ("GET", "/api/tokens"),
        ("POST", "/api/tokens"),
        ("DELETE", "/api/tokens/abcdefgh"),
        ("POST", "/api/plugins/quotes/disable"),
    ] {
        let a = http(
            web.addr,
            method,
            path,
            &[("Authorization", &basic(""))],
            None,
        )
        .await;
        assert_eq!(a.status, 403, "{method} {path}");
        assert!(a.json()["error"].as_str().unwrap().contains("web.password"));
    }
    assert_eq!(get(&web, "/login").await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_without_a_credential_it_refuses_to_start() {
    let nats = NatsServer::start();
    let err = match try_start_web(&nats, json!({"listen": "0.0.0.0:0"})) {
        Ok(_) => panic!("rosey-web started beyond loopback without web.password"),
        Err(e) => e,
    };
    assert!(err.contains("web.password"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_everything_needs_the_login() {
    let nats = NatsServer::start();
    let web = start_web(&nats, json!({"listen": "0.0.0.0:0", "password": PASSWORD}));
    let admin = basic(PASSWORD);
    for path in [
        "/",
        "/events",
        "/api/current",
        "/api/stats",
        "/metrics",
        "/health",
    ] {
        let a = get(&web, path).await;
        assert_eq!(a.status, 401, "{path}");
        assert!(a.headers["www-authenticate"].starts_with("Basic"));
        let wrong = http(
            web.addr,
            "GET",
            path,
            &[("Authorization", &basic("x"))],
            None,
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    let page = http(web.addr, "GET", "/", &[("Authorization", &admin)], None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"rosey-csrf\""),
        "the admin's page carries the token"
    );
    let login = http(
        web.addr,
        "GET",
        "/login",
        &[("Authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(login.status, 303);
    // A plugin action from a browser without the page's token is refused even for the admin.
    let forged = http(
        web.addr,
        "POST",
        "/api/plugins/quotes/disable",
        &[("Authorization", &admin), ("Sec-Fetch-Site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(forged.status, 403);
    let wrong_token = http(
        web.addr,
        "POST",
        "/api/plugins/quotes/disable",
        &[("Authorization", &admin), ("X-Rosey-CSRF", "guessed")],
        None,
    )
    .await;
    assert_eq!(wrong_token.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_opens_reads_but_not_administration() {
    let nats = NatsServer::start();
    let web = start_web(
        &nats,
        json!({"listen": "0.0.0.0:0", "password": PASSWORD, "public_read": true}),
    );
    for path in ["/", "/api/current", "/metrics"] {
        assert_eq!(get(&web, path).await.status, 200, "{path}");
    }
    let page = get(&web, "/").await;
    assert!(
        !page.body.contains("rosey-csrf"),
        "no token for anonymous readers"
    );
    assert_eq!(get(&web, "/api/tokens").await.status, 401);
    let a = http(web.addr, "POST", "/api/plugins/quotes/reload", &[], None).await;
    assert_eq!(a.status, 401);
}

//! Every row of DESIGN.md's HTTP API table, on both strategies, against the real managed
//! Redis and PostgreSQL: what curl would see.

mod common;

use cachelab::counters::Counter;
use common::{get, redis_cmd, send, serial, shared_stack, start_services};
use hyper::Method;

#[tokio::test]
async fn get_is_a_miss_then_a_hit_and_caches_the_row_for_60_seconds() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    for (server, id) in services.servers.iter().zip([1, 2]) {
        let url = format!("{}/users/{id}", server.url());
        let first = get(&url).await;
        assert_eq!(first.status, 200, "{}", server.name);
        assert_eq!(first.cache(), "MISS", "{}", server.name);
        assert_eq!(first.headers["content-type"], "application/json");
        let user = first.json();
        let seed = &cachelab::seed::users()[id - 1];
        assert_eq!(user["id"], id as i64);
        assert_eq!(user["name"], seed.name.as_str());
        assert_eq!(user["email"], seed.email.as_str());
        assert!(
            user["updated_at"].as_str().is_some_and(|t| t.contains('T')),
            "{user}"
        );

        let second = get(&url).await;
        assert_eq!(second.cache(), "HIT", "{}", server.name);
        assert_eq!(second.body, first.body, "a hit returns the same bytes");
        let cached: String = redis_cmd(&stack, &["GET", &format!("user:{id}")]).await;
        assert_eq!(
            cached.as_bytes(),
            &first.body[..],
            "user:{id} holds the row's JSON"
        );
        let ttl: i64 = redis_cmd(&stack, &["TTL", &format!("user:{id}")]).await;
        assert!((55..=60).contains(&ttl), "TTL {ttl}");
        let stats = server.backend.counters.snapshot();
        assert_eq!(
            (
                stats.get(Counter::Hits),
                stats.get(Counter::Misses),
                stats.get(Counter::DbReads),
                stats.get(Counter::CacheSets)
            ),
            (1, 1, 1, 1),
            "{}",
            server.name
        );
    }
    services.shutdown().await;
}

#[tokio::test]
async fn get_of_a_missing_user_is_404_and_bad_ids_are_400_with_json_errors() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for server in &services.servers {
        let missing = get(&format!("{}/users/999999", server.url())).await;
        assert_eq!(missing.status, 404);
        assert!(missing.error().contains("999999"), "{}", missing.error());
        for bad in [
            "abc",
            "0",
            "-1",
            "2147483648",
            "99999999999999999999",
            "1.5",
        ] {
            let answer = get(&format!("{}/users/{bad}", server.url())).await;
            assert_eq!(answer.status, 400, "{} /users/{bad}", server.name);
            assert!(
                answer.error().contains("positive integer"),
                "{}",
                answer.error()
            );
        }
    }
    services.shutdown().await;
}

#[tokio::test]
async fn put_on_write_through_caches_the_new_row_so_the_next_get_is_a_hit_with_the_new_name() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    let wt = services.server("write-through").unwrap();
    get(&format!("{}/users/3", wt.url())).await;
    let put = send(
        Method::PUT,
        &format!("{}/users/3?name=Ada%20Lovelace", wt.url()),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    assert_eq!(put.json()["name"], "Ada Lovelace");
    assert_eq!(
        put.json()["email"],
        cachelab::seed::users()[2].email.as_str(),
        "email unchanged"
    );
    let cached: String = redis_cmd(&stack, &["GET", "user:3"]).await;
    assert_eq!(
        cached.as_bytes(),
        &put.body[..],
        "the whole row Postgres returned is cached"
    );
    let after = get(&format!("{}/users/3", wt.url())).await;
    assert_eq!(after.cache(), "HIT");
    assert_eq!(after.json()["name"], "Ada Lovelace");
    services.shutdown().await;
}

#[tokio::test]
async fn put_on_cache_aside_deletes_the_key_so_the_next_get_is_a_miss_with_the_new_name() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    let ca = services.server("cache-aside").unwrap();
    get(&format!("{}/users/4", ca.url())).await;
    let put = send(
        Method::PUT,
        &format!("{}/users/4", ca.url()),
        r#"{"email": "grace@example.org"}"#,
    )
    .await;
    assert_eq!(put.status, 200, "a JSON body works too");
    assert_eq!(put.json()["email"], "grace@example.org");
    let exists: i64 = redis_cmd(&stack, &["EXISTS", "user:4"]).await;
    assert_eq!(exists, 0);
    let after = get(&format!("{}/users/4", ca.url())).await;
    assert_eq!(after.cache(), "MISS");
    assert_eq!(after.json()["email"], "grace@example.org");
    assert_eq!(ca.backend.counters.get(Counter::CacheDels), 1);
    services.shutdown().await;
}

#[tokio::test]
async fn put_refuses_missing_fields_bad_json_overlong_names_and_unknown_users() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for server in &services.servers {
        let base = server.url();
        let cases = [
            (format!("{base}/users/5"), "", 400, "name"),
            (format!("{base}/users/5"), "{not json", 400, "JSON"),
            (format!("{base}/users/5"), r#"{"name": 7}"#, 400, "string"),
            (
                format!("{base}/users/5?name={}", "x".repeat(300)),
                "",
                400,
                "limit",
            ),
            (format!("{base}/users/5?name="), "", 400, "empty"),
            (
                format!("{base}/users/424242?name=Nobody"),
                "",
                404,
                "not found",
            ),
        ];
        for (url, body, status, words) in cases {
            let answer = send(Method::PUT, &url, body).await;
            assert_eq!(answer.status, status, "{} PUT {url} {body}", server.name);
            assert!(
                answer.error().contains(words),
                "{}: {}",
                server.name,
                answer.error()
            );
        }
        let big = "x".repeat(70 * 1024);
        let too_large = send(Method::PUT, &format!("{base}/users/5"), &big).await;
        assert_eq!(too_large.status, 413);
    }
    services.shutdown().await;
}

#[tokio::test]
async fn post_creates_a_user_after_the_highest_id_and_only_write_through_and_write_behind_cache_it()
{
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    let n = cachelab::seed::users().len() as i64;
    for (next, server) in (n + 1..).zip(&services.servers) {
        let created = send(
            Method::POST,
            &format!(
                "{}/users?name=New%20Person&email=new@example.com",
                server.url()
            ),
            "",
        )
        .await;
        assert_eq!(created.status, 201);
        let user = created.json();
        assert_eq!(user["id"], next, "{}", server.name);
        assert_eq!(user["name"], "New Person");
        let exists: i64 = redis_cmd(&stack, &["EXISTS", &format!("user:{next}")]).await;
        assert_eq!(
            exists,
            i64::from(matches!(server.name, "write-through" | "write-behind")),
            "{}",
            server.name
        );
        let fetched = get(&format!("{}/users/{next}", server.url())).await;
        assert_eq!(fetched.json()["email"], "new@example.com");

        let missing_email = send(
            Method::POST,
            &format!("{}/users?name=Solo", server.url()),
            "",
        )
        .await;
        assert_eq!(missing_email.status, 400);
        assert!(missing_email.error().contains("email"));
    }
    services.shutdown().await;
}

#[tokio::test]
async fn delete_answers_204_removes_row_and_cache_entry_then_404() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    for (server, id) in services.servers.iter().zip([6, 7]) {
        let url = format!("{}/users/{id}", server.url());
        get(&url).await;
        let deleted = send(Method::DELETE, &url, "").await;
        assert_eq!(deleted.status, 204, "{}", server.name);
        assert!(deleted.body.is_empty());
        let exists: i64 = redis_cmd(&stack, &["EXISTS", &format!("user:{id}")]).await;
        assert_eq!(exists, 0, "{}: the cache entry goes too", server.name);
        assert_eq!(get(&url).await.status, 404);
        assert_eq!(send(Method::DELETE, &url, "").await.status, 404);
    }
    services.shutdown().await;
}

#[tokio::test]
async fn names_with_quotes_unicode_and_sql_are_stored_verbatim() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let server = &services.servers[0];
    let name = "O'Brien \"Bobby\"; DROP TABLE users; -- Zoë 日本";
    let body = serde_json::json!({ "name": name }).to_string();
    let put = send(Method::PUT, &format!("{}/users/8", server.url()), &body).await;
    assert_eq!(put.status, 200);
    assert_eq!(put.json()["name"], name);
    let row = services
        .store
        .get_user(8, std::time::Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.name, name);
    let count: i64 = common::sql_count(&services, "SELECT count(*) FROM users").await;
    assert_eq!(count, cachelab::seed::users().len() as i64);
    services.shutdown().await;
}

#[tokio::test]
async fn metrics_health_unknown_routes_and_wrong_methods() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for (server, id) in services.servers.iter().zip([9, 12]) {
        let base = server.url();
        get(&format!("{base}/users/{id}")).await;
        get(&format!("{base}/users/{id}")).await;
        let metrics = get(&format!("{base}/metrics")).await;
        assert_eq!(metrics.status, 200);
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        let label = format!("strategy=\"{}\"", server.name);
        for line in [
            format!("cachelab_hits_total{{{label}}} 1"),
            format!("cachelab_misses_total{{{label}}} 1"),
            format!("cachelab_db_reads_total{{{label}}} 1"),
            format!("cachelab_cache_sets_total{{{label}}} 1"),
            format!("cachelab_cache_errors_total{{{label}}} 0"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(
            text.contains("cachelab_request_duration_seconds_count{"),
            "{text}"
        );

        let health = get(&format!("{base}/health")).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "ok");

        let unknown = get(&format!("{base}/nope")).await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.error().contains("no route"));
        let wrong = send(Method::PATCH, &format!("{base}/users/1"), "").await;
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.headers["allow"], "GET, HEAD, PUT, DELETE");
        let head = send(Method::HEAD, &format!("{base}/users/{id}"), "").await;
        assert_eq!(
            (head.status, head.cache(), head.body.len()),
            (200, "HIT", 0),
            "curl -I works"
        );
        assert!(wrong.error().contains("not allowed"));
    }
    services.shutdown().await;
}

#[tokio::test]
async fn padding_inflates_the_cached_value_and_a_hit_returns_those_bytes_as_valid_json() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    services.knobs.update(|k| k.padding = 1000);
    let url = format!("{}/users/10", services.servers[0].url());
    let miss = get(&url).await;
    let strlen: i64 = redis_cmd(&stack, &["STRLEN", "user:10"]).await;
    assert_eq!(strlen as usize, miss.body.len() + 1000);
    let hit = get(&url).await;
    assert_eq!(hit.cache(), "HIT");
    assert_eq!(
        hit.body.len(),
        miss.body.len() + 1000,
        "cached bytes, not re-serialised"
    );
    assert_eq!(hit.json(), miss.json());
    services.shutdown().await;
}

#[tokio::test]
async fn ttl_knob_sets_the_expiry_of_new_entries() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    services.knobs.update(|k| k.ttl_ms = 5000);
    get(&format!("{}/users/11", services.servers[1].url())).await;
    let ttl: i64 = redis_cmd(&stack, &["TTL", "user:11"]).await;
    assert!((1..=5).contains(&ttl), "TTL {ttl}");
    services.shutdown().await;
}

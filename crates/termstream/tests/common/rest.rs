//! The REST calls of the tests on a [`TestServer`]: requests by its own
//! client, and the session calls most tests make (create, input, output,
//! terminate), each asserting the status it expects.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{POLL, TestServer};

impl TestServer {
    /// Sends a request and returns the status and the body as JSON (or
    /// `Value::Null` when the body is empty or not JSON).
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request("POST", path, Some(&body)).await
    }

    /// Creates a session; asserts 201 and returns its info.
    pub async fn create(&self, body: Value) -> Value {
        let (status, info) = self.post("/api/sessions", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "create {body} answered {info}");
        info
    }

    /// The info of a session; asserts 200.
    pub async fn info(&self, id: &str) -> Value {
        let (status, info) = self.get(&format!("/api/sessions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get {id} answered {info}");
        info
    }

    /// Sends text to a session's input; asserts 200.
    pub async fn input(&self, id: &str, data: &str) {
        let (status, body) = self
            .post(
                &format!("/api/sessions/{id}/input"),
                serde_json::json!({ "data": data }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "input to {id} answered {body}");
    }

    /// Terminates a session; asserts 200 and returns the final info.
    pub async fn terminate(&self, id: &str) -> Value {
        let (status, info) = self.post(&format!("/api/sessions/{id}/terminate"), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "terminate {id} answered {info}");
        info
    }

    /// Raw output bytes from `since` (as much as one read returns); asserts 200.
    pub async fn output(&self, id: &str, since: u64) -> Vec<u8> {
        let resp = self
            .client
            .get(self.url(&format!("/api/sessions/{id}/output?since={since}")))
            .send()
            .await
            .expect("output request");
        assert_eq!(resp.status(), StatusCode::OK, "output of {id} from {since}");
        resp.bytes().await.expect("output body").to_vec()
    }

    /// All output from `since` to the end the server holds now, over as many
    /// reads as it takes.
    pub async fn output_all(&self, id: &str, mut since: u64) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let part = self.output(id, since).await;
            if part.is_empty() {
                return all;
            }
            since += part.len() as u64;
            all.extend_from_slice(&part);
        }
    }

    /// Polls the output of a session until it contains `needle`; returns the
    /// whole output then, or panics with what was seen after `timeout`.
    pub async fn read_output_until(&self, id: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&self.output_all(id, 0).await).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in the output of {id} after {timeout:?}: {text:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls a session until its status is `status`; returns its info.
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.info(id).await;
            if info["status"] == status {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is not {status} after {timeout:?}: {info}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lets each of `ids` (command sessions waiting in `read go`) end, then
    /// creates `trigger`, which evicts them all in one step on a server of
    /// `max_sessions` 1: as many deletes in a row as there are `ids`.
    pub async fn end_and_evict(&self, ids: &[String], trigger: &str) {
        for id in ids {
            self.input(id, "go\n").await;
        }
        for id in ids {
            self.wait_status(id, "exited", super::secs(10)).await;
        }
        self.create(serde_json::json!({"id":trigger,"kind":"command","argv":["sh","-c","read go"]}))
            .await;
        let evicted = super::wait_until(super::secs(10), || async {
            let (_, list) = self.get("/api/sessions").await;
            super::session_ids(&list) == [trigger]
        })
        .await;
        assert!(evicted, "the ended sessions were not evicted");
    }
}

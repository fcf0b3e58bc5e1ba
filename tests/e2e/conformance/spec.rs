//! Whether one answer of the API is one `api/openapi.yaml` describes ([`Spec::check`]).
//!
//! The description is OpenAPI 3.0: its schemas are JSON Schema (draft 7 here, formats checked),
//! resolved against the document's `components`. A schema named like a definition of the
//! Message Registry contract (`tests/fixtures/ebox-rest-2.1.yaml`) is also checked against that
//! definition, so the description cannot drift from the contract unnoticed.

use crate::helpers::fixture;
use axum::http::{HeaderMap, Method, StatusCode, header};
use jsonschema::Validator;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One answer, as the client received it.
pub struct Answer<'a> {
    pub method: &'a Method,
    /// The request's path below the API's base path, without the query; `None` when the path
    /// is outside the base path (nothing of the API is there).
    pub path: Option<&'a str>,
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// The body, when the check reads it (JSON and YAML answers); `None` for bytes passed on
    /// unread (an attachment's content, a logo).
    pub body: Option<&'a [u8]>,
}

pub struct Spec {
    document: Value,
    /// The description's `components`, as `{"components": …}`: where its schemas resolve.
    components: Value,
    /// The contract's definitions, as `{"definitions": …}`.
    contract: Value,
    /// Validators by the schema they were built from (its JSON text and where it resolves).
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Spec {
    /// `api/openapi.yaml` and the Message Registry 2.1 contract, loaded once.
    pub fn get() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| {
            let contract =
                std::fs::read_to_string(fixture("ebox-rest-2.1.yaml")).expect("the contract");
            Spec::parse(api::OPENAPI, &contract)
        })
    }

    pub fn parse(openapi: &str, contract: &str) -> Spec {
        let document: Value = serde_yaml_ng::from_str(openapi).expect("api/openapi.yaml is YAML");
        let contract: Value = serde_yaml_ng::from_str(contract).expect("the contract is YAML");
        Spec {
            components: json!({"components": document["components"]}),
            document,
            contract: json!({"definitions": contract["definitions"]}),
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `answer` is one the description allows; otherwise every way it is not.
    pub fn check(&self, answer: &Answer) -> Result<(), String> {
        let Some(path) = answer.path else {
            return expect(answer.status == StatusCode::NOT_FOUND, || {
                format!("{} outside the base path, not a 404", answer.status)
            });
        };
        let Some((template, item)) = self.path_item(path) else {
            // The API's fallback: a StatusMessage 404 for a path it does not serve.
            return self.check_error(answer, StatusCode::NOT_FOUND, "a path not described");
        };
        let method = match *answer.method {
            Method::HEAD => "get".to_owned(),
            ref method => method.as_str().to_ascii_lowercase(),
        };
        let Some(operation) = item.get(&method) else {
            return expect(answer.status == StatusCode::METHOD_NOT_ALLOWED, || {
                format!(
                    "{} for {method} {template}, which is not described (only a 405 is)",
                    answer.status
                )
            });
        };
        let Some(response) = operation["responses"].get(answer.status.as_str()) else {
            return Err(format!(
                "{} is not a response {} {template} declares",
                answer.status, answer.method
            ));
        };
        let response = self.resolve(response);
        let mut problems = self.header_problems(response, answer.headers);
        problems.extend(self.body_problems(response, answer));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} {template} answered {}: {}",
                answer.method,
                answer.status,
                problems.join("; ")
            ))
        }
    }

    /// An answer that must be `status` with a StatusMessage (or no body).
    fn check_error(&self, answer: &Answer, status: StatusCode, what: &str) -> Result<(), String> {
        if answer.status != status {
            return Err(format!("{} for {what}, not a {status}", answer.status));
        }
        let body = answer.body.unwrap_or_default();
        if body.is_empty() {
            return Ok(());
        }
        let problems =
            self.json_problems(&json!({"$ref": "#/components/schemas/StatusMessage"}), body);
        expect(problems.is_empty(), || {
            format!("{what}: {}", problems.join("; "))
        })
    }

    /// The path item whose template matches `path`, the one with the most literal segments
    /// when several do.
    fn path_item(&self, path: &str) -> Option<(&str, &Value)> {
        let segments: Vec<&str> = path.split('/').collect();
        self.document["paths"]
            .as_object()?
            .iter()
            .filter_map(|(template, item)| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(part, segment)| {
                        part == segment || (part.starts_with('{') && !segment.is_empty())
                    });
                let literal = parts.iter().filter(|part| !part.starts_with('{')).count();
                matches.then_some((literal, template.as_str(), item))
            })
            .max_by_key(|(literal, _, _)| *literal)
            .map(|(_, template, item)| (template, item))
    }

    /// `value`, or what its local `$ref` names.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => self
                .document
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => value,
        }
    }

    /// Each declared header that is required and missing, or present and not as its schema.
    fn header_problems(&self, response: &Value, headers: &HeaderMap) -> Vec<String> {
        let Some(declared) = response["headers"].as_object() else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        for (name, header) in declared {
            let header = self.resolve(header);
            let Some(value) = headers.get(name.as_str()) else {
                if header["required"] == json!(true) {
                    problems.push(format!("header {name} is missing"));
                }
                continue;
            };
            let text = value.to_str().unwrap_or_default();
            let schema = &header["schema"];
            let instance = match schema["type"].as_str() {
                Some("integer") => text.parse::<i64>().map_or(json!(text), |n| json!(n)),
                _ => json!(text),
            };
            let errors = self.schema_errors(schema, &instance);
            if !errors.is_empty() {
                problems.push(format!("header {name}: {text:?}: {}", errors.join(", ")));
            }
        }
        problems
    }

    /// The media type declared for the answer's, and the JSON body against its schema.
    fn body_problems(&self, response: &Value, answer: &Answer) -> Vec<String> {
        let media_type = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = answer.body.unwrap_or_default();
        let Some(content) = response["content"].as_object() else {
            return if body.is_empty() {
                Vec::new()
            } else {
                vec!["a body where none is declared".to_owned()]
            };
        };
        let Some(media_type) = media_type else {
            return vec!["no Content-Type".to_owned()];
        };
        let Some(declared) = content.get(&media_type) else {
            return vec![format!("Content-Type {media_type} is not declared")];
        };
        if *answer.method == Method::HEAD || !is_json(&media_type) {
            return Vec::new();
        }
        let schema = &declared["schema"];
        let mut problems = self.json_problems(schema, body);
        if let Some(name) = component_name(schema)
            && self.contract["definitions"].get(name).is_some()
            && problems.is_empty()
        {
            let instance: Value = serde_json::from_slice(body).unwrap_or_default();
            let definition = json!({"$ref": format!("#/definitions/{name}")});
            for error in self
                .validator(&definition, &self.contract)
                .iter_errors(&instance)
            {
                problems.push(format!(
                    "against the 2.1 definition {name}: {error} at {}",
                    error.instance_path()
                ));
            }
        }
        problems
    }

    /// `body` parsed as JSON and validated against `schema`.
    fn json_problems(&self, schema: &Value, body: &[u8]) -> Vec<String> {
        match serde_json::from_slice::<Value>(body) {
            Ok(instance) => self.schema_errors(schema, &instance),
            Err(error) => vec![format!("the body is not JSON: {error}")],
        }
    }

    /// `instance` against `schema`, resolved in the description's `components`.
    pub fn schema_errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema, &self.components)
            .iter_errors(instance)
            .map(|error| format!("{error} at {}", error.instance_path()))
            .collect()
    }

    /// A validator of `schema` whose references resolve in `root` (built once).
    fn validator(&self, schema: &Value, root: &Value) -> Arc<Validator> {
        let key = format!("{schema}|{}", root.get("definitions").is_some());
        let mut validators = self.validators.lock().expect("the validators");
        validators
            .entry(key)
            .or_insert_with(|| {
                let mut document = root.clone();
                if let (Some(document), Some(schema)) =
                    (document.as_object_mut(), schema.as_object())
                {
                    document.extend(schema.clone());
                }
                Arc::new(
                    jsonschema::draft7::options()
                        .should_validate_formats(true)
                        .build(&document)
                        .unwrap_or_else(|e| panic!("a valid schema {schema}: {e}")),
                )
            })
            .clone()
    }
}

fn expect(holds: bool, problem: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(problem()) }
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// `X` when `schema` is `{"$ref": "#/components/schemas/X"}`.
fn component_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    axum::http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    fn check(
        method: Method,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: Value,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&body).expect("JSON");
        Spec::get().check(&Answer {
            method: &method,
            path: Some(path),
            status: StatusCode::from_u16(status).expect("a status"),
            headers,
            body: Some(&body),
        })
    }

    fn private_json() -> HeaderMap {
        headers(&[
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
        ])
    }

    fn summary() -> Value {
        json!({"numberOfMessages": 2, "numberOfUnreadMessages": 1, "eboxSize": 1.5,
               "lastReceiptDate": "2026-12-07T10:00:00Z"})
    }

    #[test]
    fn a_summary_as_the_api_writes_it_conforms() {
        check(Method::GET, "/ebox", 200, &private_json(), summary()).expect("conforms");
        check(Method::HEAD, "/ebox", 200, &private_json(), json!(null))
            .expect("a HEAD has no body");
    }

    #[test]
    fn a_wrong_body_an_undeclared_status_or_a_missing_header_is_caught() {
        let mut wrong = summary();
        wrong["numberOfMessages"] = json!("two");
        let problem =
            check(Method::GET, "/ebox", 200, &private_json(), wrong).expect_err("a string count");
        assert!(
            problem.contains("GET /ebox answered 200 OK") && problem.contains("numberOfMessages"),
            "{problem}"
        );

        let mut extra = summary();
        extra["recipient"] = json!("85073003328");
        assert!(
            check(Method::GET, "/ebox", 200, &private_json(), extra).is_err(),
            "a member nobody agreed"
        );

        let error = json!({"id": uuid::Uuid::new_v4(), "code": "NOT_FOUND", "message": "no"});
        let problem =
            check(Method::GET, "/ebox", 404, &private_json(), error).expect_err("404 undeclared");
        assert!(problem.contains("is not a response"), "{problem}");

        let cached = headers(&[
            ("content-type", "application/json"),
            ("cache-control", "max-age=60"),
        ]);
        let problem = check(Method::GET, "/ebox", 200, &cached, summary()).expect_err("cacheable");
        assert!(
            problem.contains("Cache-Control") && problem.contains("X-Content-Type-Options"),
            "{problem}"
        );

        let text = headers(&[
            ("content-type", "text/plain"),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
        ]);
        assert!(
            check(Method::GET, "/ebox", 200, &text, summary()).is_err(),
            "not JSON"
        );
    }

    #[test]
    fn an_error_must_be_a_status_message_and_a_429_must_say_when_to_retry() {
        let plain = headers(&[("content-type", "application/json"), ("retry-after", "1")]);
        let error = json!({"id": uuid::Uuid::new_v4(), "code": "TOO_MANY_REQUESTS", "message": "slow down"});
        check(Method::GET, "/ebox/messages", 429, &plain, error.clone()).expect("conforms");
        let no_retry = headers(&[("content-type", "application/json")]);
        assert!(
            check(Method::GET, "/ebox/messages", 429, &no_retry, error).is_err(),
            "Retry-After"
        );
        let bare = json!({"error": "Failed to deserialize query string"});
        assert!(
            check(Method::GET, "/ebox/messages", 400, &plain, bare).is_err(),
            "not a StatusMessage"
        );
    }

    #[test]
    fn the_contract_is_checked_beside_the_description() {
        // The description's Ebox allows what the contract's requires; a spec that drifted from
        // the contract (here a contract that requires a member the API never writes) is caught.
        let contract =
            r#"{"definitions": {"Ebox": {"type": "object", "required": ["eboxOwner"]}}}"#;
        let spec = Spec::parse(api::OPENAPI, contract);
        let body = serde_json::to_vec(&summary()).expect("JSON");
        let problem = spec
            .check(&Answer {
                method: &Method::GET,
                path: Some("/ebox"),
                status: StatusCode::OK,
                headers: &private_json(),
                body: Some(&body),
            })
            .expect_err("the contract's definition");
        assert!(problem.contains("2.1 definition Ebox"), "{problem}");
    }

    #[test]
    fn paths_match_their_templates_and_the_fallbacks_are_allowed() {
        let spec = Spec::get();
        let (template, _) = spec
            .path_item("/ebox/citizen/document/events")
            .expect("described");
        assert_eq!(template, "/ebox/citizen/document/events");
        let (template, _) = spec
            .path_item("/ebox/messages/abc/attachments")
            .expect("described");
        assert_eq!(template, "/ebox/messages/{messageId}/attachments");
        let error = json!({"id": uuid::Uuid::new_v4(), "code": "NOT_FOUND", "message": "no"});
        check(
            Method::GET,
            "/nothing/here",
            404,
            &private_json(),
            error.clone(),
        )
        .expect("the fallback");
        assert!(check(Method::GET, "/nothing/here", 200, &private_json(), error).is_err());
        let empty = Spec::get().check(&Answer {
            method: &Method::PUT,
            path: Some("/ebox"),
            status: StatusCode::METHOD_NOT_ALLOWED,
            headers: &HeaderMap::new(),
            body: Some(b""),
        });
        empty.expect("an undescribed method is a 405");
    }

    #[test]
    fn a_logo_is_checked_by_its_media_type_and_headers_not_its_bytes() {
        let logo = headers(&[
            ("content-type", "image/png"),
            (
                "cache-control",
                "public, no-transform, proxy-revalidate, max-age=86400",
            ),
            (
                "etag",
                "\"0000000000000000000000000000000000000000000000000000000000000000\"",
            ),
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", "sandbox"),
        ]);
        let answer = |headers| Answer {
            method: &Method::GET,
            path: Some("/referenceData/senderOrganizations/0406798006/images/logo/content"),
            status: StatusCode::OK,
            headers,
            body: None,
        };
        Spec::get().check(&answer(&logo)).expect("conforms");
        let mut no_etag = logo.clone();
        no_etag.remove(header::ETAG);
        assert!(
            Spec::get().check(&answer(&no_etag)).is_err(),
            "ETag required"
        );
        let mut pdf = logo.clone();
        pdf.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pdf"),
        );
        assert!(Spec::get().check(&answer(&pdf)).is_err(), "not an image");
    }
}

//! Every answer the end-to-end tests receive from the API is one `api/openapi.yaml` describes.
//!
//! - [`spec`]: whether one answer conforms — its status declared for the path and method, its
//!   headers, its media type, its JSON body valid against the declared schema and, when that
//!   schema is named after a Message Registry 2.1 definition, against the definition too;
//! - [`front`]: a reverse proxy on loopback that the harness puts in front of the real API
//!   ([`crate::helpers::spawn_app_with`]), so that every request a test makes passes through
//!   it and every answer is checked on its way back; what does not conform is recorded, and
//!   the test fails when its `TestApp` is dropped;
//! - [`harness`]: that the harness does check every answer.

pub mod front;
mod harness;
pub mod spec;

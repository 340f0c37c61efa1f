//! Request errors that know who is at fault: the client (4xx), an upstream node (502–504) or
//! the gateway itself (500). The fault chooses the status, the log level and the metric label.
//!
//! Answers are nodeos-shaped JSON so chain clients show the reason. They never echo request
//! bytes or internal details (addresses of upstream nodes, file names) to the client.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::filter::Rejection;

/// Who caused a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// No failure.
    None,
    /// The client sent something refused (4xx).
    Downstream,
    /// An upstream node failed or was unavailable (502, 503, 504).
    Upstream,
    /// The gateway failed (500).
    Internal,
}

impl Fault {
    /// The metric and log label.
    pub fn label(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Downstream => "downstream",
            Fault::Upstream => "upstream",
            Fault::Internal => "internal",
        }
    }
}

/// Why a request was not proxied, or failed on the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The path is not on the allowlist.
    #[error("this API is not served here")]
    NotAllowed,
    /// The client is banned for repeated refusals.
    #[error("too many refused requests: this client is banned for a while")]
    Banned,
    /// The path is not canonical (`..`, `//`, escapes).
    #[error("request path must be canonical")]
    BadPath,
    /// The method is not GET or POST.
    #[error("only GET and POST are accepted")]
    Method,
    /// HTTP/1 framing that could smuggle a request (CL+TE, duplicate or invalid length, bad
    /// chunking, obs-fold).
    #[error("malformed request framing: {0}")]
    Framing(&'static str),
    /// The body is larger than the route allows.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The request target is longer than allowed.
    #[error("request target too long")]
    UriTooLong,
    /// The body did not arrive in time.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The body could not be read.
    #[error("request body could not be read")]
    BodyRead,
    /// The API filter refused the body (transaction checks, query caps).
    #[error(transparent)]
    Filtered(#[from] Rejection),
    /// Rate limited.
    #[error("too many requests; retry after {} s", retry_after_secs(*.0))]
    Limited(Duration),
    /// No healthy node in the pool.
    #[error("no upstream node is available")]
    NoUpstream,
    /// Every healthy node had `max_in_flight_per_node` requests for `queue_timeout_ms`.
    #[error("every upstream node is busy; retry after 1 s")]
    UpstreamBusy,
    /// Connecting to, or talking to, the upstream failed.
    #[error("upstream node failed")]
    Upstream,
    /// The upstream did not answer in time.
    #[error("upstream node did not answer in time")]
    UpstreamTimeout,
    /// A bug or resource failure in the gateway.
    #[error("internal gateway error")]
    Internal,
}

fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl RequestError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotAllowed | RequestError::Banned => StatusCode::FORBIDDEN,
            RequestError::BadPath
            | RequestError::Framing(_)
            | RequestError::BodyRead
            | RequestError::Filtered(_) => StatusCode::BAD_REQUEST,
            RequestError::Method => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::UriTooLong => StatusCode::URI_TOO_LONG,
            RequestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RequestError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            RequestError::NoUpstream | RequestError::UpstreamBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RequestError::Upstream => StatusCode::BAD_GATEWAY,
            RequestError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            RequestError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            RequestError::NoUpstream
            | RequestError::UpstreamBusy
            | RequestError::Upstream
            | RequestError::UpstreamTimeout => Fault::Upstream,
            RequestError::Internal => Fault::Internal,
            _ => Fault::Downstream,
        }
    }

    /// A short stable reason code for logs, metrics and the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NotAllowed => "route_not_allowed",
            RequestError::Banned => "banned",
            RequestError::BadPath => "bad_path",
            RequestError::Method => "method_not_allowed",
            RequestError::Framing(_) => "bad_framing",
            RequestError::TooLarge(_) => "body_too_large",
            RequestError::UriTooLong => "uri_too_long",
            RequestError::BodyTimeout => "body_timeout",
            RequestError::BodyRead => "body_read",
            RequestError::Filtered(r) => r.reason(),
            RequestError::Limited(_) => "rate_limited",
            RequestError::NoUpstream => "no_upstream",
            RequestError::UpstreamBusy => "upstream_busy",
            RequestError::Upstream => "upstream_failed",
            RequestError::UpstreamTimeout => "upstream_timeout",
            RequestError::Internal => "internal",
        }
    }

    /// The answer sent to the client: a nodeos-shaped JSON error.
    pub fn response<B: From<Bytes>>(&self) -> Response<B> {
        let status = self.status();
        let body = serde_json::json!({
            "code": status.as_u16(),
            "message": status.canonical_reason().unwrap_or("error"),
            "error": {
                "code": match self {
                    RequestError::Filtered(r) => r.nodeos_code(),
                    _ => 0,
                },
                "name": self.code(),
                "what": self.to_string(),
                "details": [{
                    "message": self.to_string(),
                    "file": "",
                    "line_number": 0,
                    "method": "rempart-gateway",
                }],
            },
        });
        let mut resp = Response::new(B::from(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let RequestError::Limited(wait) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(*wait)));
        }
        if matches!(self, RequestError::UpstreamBusy) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u64));
        }
        // A refused transaction or query was read whole: the connection stays usable.
        if matches!(self, RequestError::Banned)
            || (self.fault() == Fault::Downstream
                && status == StatusCode::BAD_REQUEST
                && !matches!(self, RequestError::Filtered(_)))
        {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

//! The URL scheme and the HTTP checks of the protocol (docs/protocol.md), in Mercurial's order:
//!
//! ```text
//! POST <prefix>/<permission>/<command>
//!        |          |            `-- a registered command, `multirequest`,
//!        |          |                or `debugreflect` (when enabled)
//!        |          `-- `ro` or `rw`
//!        `-- `/api/exp-http-v2-0001` by default
//! ```
//!
//! | check, in order                              | answer |
//! |----------------------------------------------|--------|
//! | path outside the prefix, or no command       | 404    |
//! | permission other than `ro`/`rw`              | 404    |
//! | method other than POST                       | 405, `Allow: POST` |
//! | `debugreflect` while disabled                | 404    |
//! | unknown command                              | 404    |
//! | `Accept` missing or not the media type       | 406    |
//! | `Content-Type` not the media type            | 415    |
//!
//! Every refusal is `text/plain` with a message that says what the client must send;
//! [`Reject::into_response`] is the one place that maps refusals to status codes.

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};

use crate::config::ServerConfig;
use hgframe_engine::{Permission, Registry};

/// Where a request that passed every check goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The prefix itself: a short text that says what lives here.
    Index,
    /// Run the frames of the body.
    Exchange {
        /// What the URL grants.
        permission: Permission,
        /// The command named in the URL (`multirequest` for several).
        target: Target,
    },
    /// Reflect what the reactor sees (`debugreflect`).
    Reflect,
}

/// What the URL asks to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Exactly this command, once.
    Single(Bytes),
    /// Any number of commands, each checked against the URL's permission.
    Multi,
}

/// Why a request is refused before any frame is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 404: nothing there.
    NotFound(String),
    /// 405: only POST runs commands.
    MethodNotAllowed,
    /// 406: the client must accept the media type.
    NotAcceptable(String),
    /// 415: the body must be of the media type.
    UnsupportedMediaType(String),
}

impl Reject {
    /// The status code of the refusal.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The `text/plain` answer (with `Allow: POST` for 405).
    pub(crate) fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let status = self.status();
        let message = match self {
            Self::NotFound(m) | Self::NotAcceptable(m) | Self::UnsupportedMediaType(m) => m,
            Self::MethodNotAllowed => "commands require POST requests".to_owned(),
        };
        let mut builder = Response::builder().status(status);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            builder = builder.header(header::ALLOW, "POST");
        }
        text_response(builder, message)
    }
}

/// A `text/plain` response with `message` and a final newline.
pub(crate) fn text_response<B: From<Bytes>>(
    builder: http::response::Builder,
    mut message: String,
) -> Response<B> {
    message.push('\n');
    let body = B::from(Bytes::from(message));
    builder
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .unwrap_or_else(|_| {
            // Only a malformed header could fail, and the headers above are constants.
            let mut r = Response::new(B::from(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

/// Runs the checks of the table above.
pub(crate) fn route(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    config: &ServerConfig,
    registry: &Registry,
) -> Result<Route, Reject> {
    let prefix = config.prefix().trim_end_matches('/');
    let rest = path
        .strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or_else(|| Reject::NotFound(format!("not found: {path}")))?;
    // Up to three segments are enough to tell (no list is built per request).
    let mut parts = rest.split('/').filter(|s| !s.is_empty());
    let (permission, command) = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => return Ok(Route::Index),
        (Some(permission), Some(command), None) => (permission, command),
        _ => {
            return Err(Reject::NotFound(format!(
                "do not know how to process {path}; use {prefix}/<ro|rw>/<command>"
            )))
        }
    };
    let permission = Permission::from_segment(permission)
        .ok_or_else(|| Reject::NotFound(format!("unknown permission: {permission}")))?;
    if method != Method::POST {
        return Err(Reject::MethodNotAllowed);
    }
    let route = match command {
        "debugreflect" if config.debugreflect() => Route::Reflect,
        "debugreflect" => {
            return Err(Reject::NotFound(
                "debugreflect service not available".to_owned(),
            ))
        }
        "multirequest" => Route::Exchange {
            permission,
            target: Target::Multi,
        },
        name if registry.get(name.as_bytes()).is_some() => Route::Exchange {
            permission,
            target: Target::Single(Bytes::copy_from_slice(name.as_bytes())),
        },
        name => {
            return Err(Reject::NotFound(format!(
                "unknown wire protocol command: {name}"
            )))
        }
    };
    let media_type = config.media_type();
    if !header_is(headers, header::ACCEPT, media_type) {
        return Err(Reject::NotAcceptable(format!(
            "client MUST specify Accept header with value: {media_type}"
        )));
    }
    if !header_is(headers, header::CONTENT_TYPE, media_type) {
        return Err(Reject::UnsupportedMediaType(format!(
            "client MUST send Content-Type header with value: {media_type}"
        )));
    }
    Ok(route)
}

/// Whether the header is present exactly once with this value (surrounding blanks
/// aside), as Mercurial compares it.
fn header_is(headers: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        // The value clients send, checked first: one comparison of bytes instead of a
        // check of every character, a trim and a comparison ignoring case.
        (Some(v), None) if v.as_bytes() == want.as_bytes() => true,
        (Some(v), None) => v
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case(want)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hgframe_engine::{CommandError, CommandInput, Responder};

    fn registry() -> Registry {
        let mut r = Registry::new();
        let h = |_: CommandInput, _: Responder| async { Ok::<(), CommandError>(()) };
        r.register("echo", Permission::ReadOnly, h);
        r
    }

    fn good_headers(config: &ServerConfig) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, config.media_type().parse().unwrap());
        h.insert(header::CONTENT_TYPE, config.media_type().parse().unwrap());
        h
    }

    fn status(method: Method, path: &str, headers: &HeaderMap, config: &ServerConfig) -> u16 {
        match route(&method, path, headers, config, &registry()) {
            Ok(_) => 200,
            Err(r) => r.status().as_u16(),
        }
    }

    #[test]
    fn the_checks_in_order() {
        let c = ServerConfig::default();
        let h = good_headers(&c);
        let p = "/api/exp-http-v2-0001";
        assert_eq!(status(Method::POST, &format!("{p}/ro/echo"), &h, &c), 200);
        assert_eq!(status(Method::POST, &format!("{p}/rw/echo"), &h, &c), 200);
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/multirequest"), &h, &c),
            200
        );
        assert_eq!(status(Method::POST, "/elsewhere/ro/echo", &h, &c), 404);
        assert_eq!(
            status(Method::POST, "/api/exp-http-v2-0001x/ro/echo", &h, &c),
            404
        );
        assert_eq!(status(Method::POST, &format!("{p}/ro"), &h, &c), 404);
        assert_eq!(status(Method::POST, &format!("{p}/ro/echo/x"), &h, &c), 404);
        assert_eq!(status(Method::POST, &format!("{p}/xx/echo"), &h, &c), 404);
        // Permission before method, method before command.
        assert_eq!(status(Method::GET, &format!("{p}/xx/echo"), &h, &c), 404);
        assert_eq!(status(Method::GET, &format!("{p}/ro/nosuch"), &h, &c), 405);
        assert_eq!(status(Method::POST, &format!("{p}/ro/nosuch"), &h, &c), 404);
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/debugreflect"), &h, &c),
            404
        );
        // Command before media types.
        let none = HeaderMap::new();
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/nosuch"), &none, &c),
            404
        );
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/echo"), &none, &c),
            406
        );
        let mut accept_only = HeaderMap::new();
        accept_only.insert(header::ACCEPT, c.media_type().parse().unwrap());
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/echo"), &accept_only, &c),
            415
        );
        let mut wrong = good_headers(&c);
        wrong.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert_eq!(
            status(Method::POST, &format!("{p}/ro/echo"), &wrong, &c),
            406
        );
    }

    #[test]
    fn media_types_match_ignoring_case_and_surrounding_blanks_but_only_once() {
        let c = ServerConfig::default();
        let path = "/api/exp-http-v2-0001/ro/echo";
        let loose = format!("  {} ", c.media_type().to_uppercase());
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, loose.parse().unwrap());
        h.insert(header::CONTENT_TYPE, loose.parse().unwrap());
        assert_eq!(status(Method::POST, path, &h, &c), 200);
        h.append(header::ACCEPT, c.media_type().parse().unwrap());
        assert_eq!(status(Method::POST, path, &h, &c), 406, "twice");
        let mut other = good_headers(&c);
        other.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(status(Method::POST, path, &other, &c), 415);
    }

    #[test]
    fn index_reflect_and_configured_prefix() {
        let mut c = ServerConfig::default();
        c.set_prefix("/hg/")
            .set_debugreflect(true)
            .set_media_type("application/x-test");
        let h = good_headers(&c);
        let r = registry();
        assert_eq!(route(&Method::POST, "/hg", &h, &c, &r), Ok(Route::Index));
        assert_eq!(route(&Method::GET, "/hg/", &h, &c, &r), Ok(Route::Index));
        assert_eq!(
            route(&Method::POST, "/hg/ro/debugreflect", &h, &c, &r),
            Ok(Route::Reflect)
        );
        assert_eq!(
            route(&Method::POST, "/hg/rw/echo", &h, &c, &r),
            Ok(Route::Exchange {
                permission: Permission::ReadWrite,
                target: Target::Single(Bytes::from("echo"))
            })
        );
        assert_eq!(
            status(Method::POST, "/api/exp-http-v2-0001/ro/echo", &h, &c),
            404
        );
    }

    #[test]
    fn refusals_are_text_with_allow_on_405() {
        let r: Response<http_body_util::Full<Bytes>> = Reject::MethodNotAllowed.into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
}

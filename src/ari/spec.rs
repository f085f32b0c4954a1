//! The shape of the route table: resources, their paths, operations and
//! parameters. One table ([`super::routes::RESOURCES`]) both serves requests and
//! generates the api-docs, so the docs never list an operation that is not served.

use std::future::Future;
use std::pin::Pin;

use super::args::Args;
use super::error::AriError;
use crate::host::Node;

/// What a handler returns on success.
#[derive(Debug)]
pub enum Reply {
    /// 200 with a JSON body.
    Json(serde_json::Value),
    /// 201 with a JSON body (a resource made by the request, such as a
    /// playback) and the resource's path for the `Location` header
    /// (`/playbacks/ID`, relative to `/ari` as Asterisk gives it).
    Created(serde_json::Value, String),
    /// 204, no body.
    NoContent,
    /// 200 with a file's bytes and their `Content-Type` (a stored
    /// recording's `file`).
    File(&'static str, Vec<u8>),
    /// 200 with a JSON body already serialized (a long list, built a page
    /// at a time: see `ari::ops::paged_list`).
    JsonText(String),
}

/// A boxed handler future.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, AriError>> + Send + 'a>>;

/// A handler: the operation's implementation.
pub type Handler = for<'a> fn(&'a Node, Args) -> HandlerFuture<'a>;

/// Wraps an `async fn(&Node, Args) -> Result<Reply, AriError>` into a [`Handler`].
#[macro_export]
macro_rules! handler {
    ($f:path) => {{
        fn wrap(
            node: &$crate::host::Node,
            args: $crate::ari::args::Args,
        ) -> $crate::ari::spec::HandlerFuture<'_> {
            Box::pin($f(node, args))
        }
        wrap as $crate::ari::spec::Handler
    }};
}

/// An HTTP method ARI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
}

/// Where a parameter is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Path,
    Query,
    Body,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Path => "path",
            ParamType::Query => "query",
            ParamType::Body => "body",
        }
    }
}

/// The type of a parameter's value, as Swagger 1.1 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    String,
    Int,
    Long,
    Boolean,
    /// A JSON object of string values (`variables`).
    Containers,
    /// Any JSON object (`filter`).
    Object,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Int => "int",
            DataType::Long => "long",
            DataType::Boolean => "boolean",
            DataType::Containers => "containers",
            DataType::Object => "object",
        }
    }
}

/// One parameter of an operation.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    pub param_type: ParamType,
    pub data_type: DataType,
    pub required: bool,
    pub allow_multiple: bool,
    pub default: Option<&'static str>,
    pub allowable: Option<&'static [&'static str]>,
    /// The smallest value an integer parameter takes (a Swagger `RANGE`).
    pub min: Option<i64>,
    /// The 400 message when a required parameter is missing (Asterisk's
    /// wording differs per operation); `None` means `Missing parameter NAME`.
    pub missing: Option<&'static str>,
}

impl Param {
    /// A path parameter (always required).
    pub const fn path(name: &'static str, description: &'static str) -> Param {
        Param {
            name,
            description,
            param_type: ParamType::Path,
            data_type: DataType::String,
            required: true,
            allow_multiple: false,
            default: None,
            allowable: None,
            min: None,
            missing: None,
        }
    }

    /// An optional string query parameter.
    pub const fn query(name: &'static str, description: &'static str) -> Param {
        Param {
            name,
            description,
            param_type: ParamType::Query,
            data_type: DataType::String,
            required: false,
            allow_multiple: false,
            default: None,
            allowable: None,
            min: None,
            missing: None,
        }
    }

    /// A body parameter (a JSON object under this key).
    pub const fn body(name: &'static str, description: &'static str, data_type: DataType) -> Param {
        Param {
            name,
            description,
            param_type: ParamType::Body,
            data_type,
            required: false,
            allow_multiple: false,
            default: None,
            allowable: None,
            min: None,
            missing: None,
        }
    }

    pub const fn required(mut self) -> Param {
        self.required = true;
        self
    }

    pub const fn missing(mut self, message: &'static str) -> Param {
        self.missing = Some(message);
        self
    }

    pub const fn multiple(mut self) -> Param {
        self.allow_multiple = true;
        self
    }

    pub const fn typed(mut self, data_type: DataType) -> Param {
        self.data_type = data_type;
        self
    }

    pub const fn default(mut self, value: &'static str) -> Param {
        self.default = Some(value);
        self
    }

    pub const fn one_of(mut self, values: &'static [&'static str]) -> Param {
        self.allowable = Some(values);
        self
    }

    /// An integer parameter that is at least `min`.
    pub const fn at_least(mut self, min: i64) -> Param {
        self.min = Some(min);
        self
    }
}

/// One operation: a method on a path.
#[derive(Clone, Copy, Debug)]
pub struct Operation {
    pub method: Method,
    pub nickname: &'static str,
    pub summary: &'static str,
    pub response_class: &'static str,
    pub params: &'static [Param],
    pub errors: &'static [(u16, &'static str)],
    /// `Some("websocket")` for the events socket.
    pub upgrade: Option<&'static str>,
    pub handler: Option<Handler>,
    /// Parameters Asterisk's operation takes that crossbar refuses, each with
    /// the reason the 400 gives. They are not in the api-docs.
    pub refused: &'static [(&'static str, &'static str)],
}

impl Operation {
    /// The operation, refusing `params` (name, reason) with a 400 that says why.
    pub const fn refusing(mut self, params: &'static [(&'static str, &'static str)]) -> Operation {
        self.refused = params;
        self
    }
}

/// A path and its operations.
#[derive(Clone, Copy, Debug)]
pub struct Api {
    pub path: &'static str,
    pub description: &'static str,
    pub operations: &'static [Operation],
}

/// A resource: one api-docs file.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    pub name: &'static str,
    pub description: &'static str,
    pub apis: &'static [Api],
}

/// Matches a concrete path (without `/ari`) against a template such as
/// `/channels/{channelId}/hold`, returning the path parameters.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(out),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    out.push((name.to_string(), percent_decode(ps)?));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes of a path segment, and `+` as a space as Asterisk
/// does (`ast_uri_http_legacy`): asyncari sends path parameters through
/// `quote_plus`. `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates() {
        assert_eq!(
            match_path("/channels/{channelId}/hold", "/channels/abc/hold"),
            Some(vec![("channelId".to_string(), "abc".to_string())])
        );
        assert_eq!(match_path("/channels/{channelId}", "/channels/"), None);
        assert_eq!(match_path("/channels", "/channels/x"), None);
        assert_eq!(
            match_path("/channels/{channelId}", "/channels/a%20b"),
            Some(vec![("channelId".to_string(), "a b".to_string())])
        );
        assert_eq!(
            match_path("/channels/{channelId}", "/channels/a+b%2Bc"),
            Some(vec![("channelId".to_string(), "a b+c".to_string())])
        );
        assert_eq!(match_path("/channels/{channelId}", "/channels/%zz"), None);
    }
}

//! Who may use the operator API: tokens kept as their SHA-256, roles, and the check of a
//! request's bearer token (constant-time against every token).
//!
//! Where it sits: every HTTP handler of [`super::http`] calls [`authorize`] first; `config/`
//! builds the [`ApiSettings`] (with the tokens' hashes) from `[api]`.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Read and change setpoints and modes.
    Operator,
}

/// One operator's token, kept only as its SHA-256.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The API's settings (`[api]`).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub listen: Option<std::net::SocketAddr>,
    pub tokens: Vec<ApiToken>,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// 64 hex digits → 32 bytes (`None` if malformed).
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An API error: its status and the message of the `{"error": …}` body.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The name of the token `headers` present, if it is known and its role allows `need`.
pub fn authorize(tokens: &[ApiToken], headers: &HeaderMap, need: Role) -> Result<String, ApiError> {
    let token = identify(tokens, headers)?;
    if need == Role::Operator && token.role != Role::Operator {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} is a viewer; changes need an operator token",
                token.name
            ),
        ));
    }
    Ok(token.name.clone())
}

/// The known token `headers` present (`401` if none).
pub fn identify<'a>(tokens: &'a [ApiToken], headers: &HeaderMap) -> Result<&'a ApiToken, ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer …)".into(),
            )
        })?;
    let hash = sha256(presented.trim().as_bytes());
    // Constant-time comparison against every token, so timing says nothing about which matched.
    let mut found: Option<&ApiToken> = None;
    for t in tokens.iter() {
        let diff = t
            .sha256
            .iter()
            .zip(hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(t);
        }
    }
    found.ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_round_trip() {
        let h = sha256(b"abc");
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_sha256_hex(&hex), Some(h));
        assert_eq!(parse_sha256_hex("zz"), None);
    }
}

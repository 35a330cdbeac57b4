//! API tokens as the rest of the system sees them: never the secret itself
//! once it has been handed out.

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::role::Role;

/// A stored token. The secret is kept only as a SHA-256 digest, so this
/// type has nothing secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// A personal access token of one company (spec 002) reaches only that
    /// company's routes; None for a server-wide token.
    pub company_id: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

/// Checks a token's label: 1..=128 characters, no control characters.
/// A company's personal access token (spec 002) is never an admin token.
pub fn check_company_role(role: crate::role::Role, company: Option<i64>) -> Result<(), crate::Invalid> {
    if company.is_some() && role == crate::role::Role::Admin {
        return Err(crate::Invalid::one(
            "role",
            "company_role",
            "a company's token cannot be an admin token (use viewer, operator or editor)",
        ));
    }
    Ok(())
}

pub fn check_token_name(name: &str) -> Result<(), crate::Invalid> {
    if name.trim().is_empty() {
        return Err(crate::Invalid::one("name", "required", "a token needs a name"));
    }
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(crate::Invalid::one(
            "name",
            "name_syntax",
            "must be at most 128 characters without control characters",
        ));
    }
    Ok(())
}

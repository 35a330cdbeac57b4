//! Roles and what they allow. Roles are ordered: each one may do everything
//! the one below it may, plus its own capability.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything that is not secret.
    Viewer,
    /// Also starts, stops and replays runs.
    Operator,
    /// Also changes content: steps, applications, configurations, schedules.
    Editor,
    /// Also manages tokens and roles.
    Admin,
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    Read,
    Operate,
    Edit,
    Administer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Editor, Role::Admin];

    pub fn allows(self, need: Capability) -> bool {
        let granted = match self {
            Role::Viewer => Capability::Read,
            Role::Operator => Capability::Operate,
            Role::Editor => Capability::Edit,
            Role::Admin => Capability::Administer,
        };
        granted >= need
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_exactly_its_capability_and_below() {
        use Capability::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Operator, [true, true, false, false]),
            (Role::Editor, [true, true, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, expect) in table {
            let got = [Read, Operate, Edit, Administer].map(|c| role.allows(c));
            assert_eq!(got, expect, "{role}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}

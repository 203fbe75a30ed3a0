//! Where things come from: database credentials ([`credentials`], from the environment or
//! [`vault`]) and the desired state's git commit ([`git`]). Each is a small trait or function at the edge, so the core stays pure.

pub mod credentials;
pub mod git;
pub mod vault;

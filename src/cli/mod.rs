//! Subcommands: each parses its arguments, calls the library, renders, and returns an exit
//! code. No business logic lives here.

pub mod validate;

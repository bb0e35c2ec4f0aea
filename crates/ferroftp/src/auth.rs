//! The old paths of [`crate::users`] and of the permissions in [`crate::policy`], kept so
//! that code written against `auth::…` goes on compiling. New code uses `crate::users`
//! (users, hashes, the users file and the [`UserDirectory`] trait) and `crate::policy`
//! ([`Permission`], [`Permissions`]).

pub use crate::policy::{Permission, Permissions};
pub use crate::users::{
    AuthError, EditMode, HashParams, HashScheme, Refusal, Upgrade, User, UserChange, UserDb,
    UserDirectory, UserUpdate, UsersFile, check_homes, check_password_hash, check_user_name,
    delete_user, edit_user, generate_password, hash_password, read_new_password, resolve_home,
    upgrade_hash, upsert_user, upsert_users,
};

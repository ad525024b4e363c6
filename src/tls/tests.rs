//! Loading certificates and keys: every key type, chains, and the errors
//! that name the file at fault.

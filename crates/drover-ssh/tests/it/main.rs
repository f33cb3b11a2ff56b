//! drover-ssh's integration tests, one binary (as ripgrep's): failure
//! modes of the transport that need no SSH server (each must end in bounded
//! time with an error that says what happened), host-key fingerprints, and
//! secrets that never print.

mod support;

mod transport;

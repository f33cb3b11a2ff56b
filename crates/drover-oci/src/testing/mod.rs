//! Test support (feature `testing`; never in a shipping build): a
//! throwaway registry ([`registry::TestRegistry`], Debian's
//! `docker-registry` on a free loopback port in a temp dir) and images
//! built locally with no internet ([`images`]: layers from the
//! controller's busybox-static, pushed with oci-client, written as OCI
//! layouts and as legacy `docker save` tarballs by hand).

pub mod images;
pub mod layout;
pub mod registry;

//! Image services on lab hosts, end to end (filled in below).

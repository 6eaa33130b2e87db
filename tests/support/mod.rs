//! What the integration tests share: the real `rtc-demo serve` and a minimal client
//! (`serve`), child processes read from /proc (`process`), and loopback ports.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod process;
pub mod serve;

/// A loopback port that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

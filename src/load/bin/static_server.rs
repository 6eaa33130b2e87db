//! The loopback static server the load benchmark and memory scripts aim at:
//! `load_static_server [ADDR] [THREADS]` (default 127.0.0.1:8089, all cores). Answers every
//! request with 200 and a 2-byte body; prints `listening on http://ADDR` once bound.
use std::net::SocketAddr;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().unwrap_or_else(|| "127.0.0.1:8089".into()).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load_static_server: bad address: {e} (expected e.g. 127.0.0.1:8089)");
            return std::process::ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.next().and_then(|t| t.parse::<usize>().ok()).filter(|t| *t > 0) {
        rt.worker_threads(t);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load_static_server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    rt.block_on(async {
        match rtc_demo::load::testserver::spawn(addr, Default::default()).await {
            Ok(server) => {
                println!("listening on http://{}", server.addr);
                let _ = tokio::signal::ctrl_c().await;
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("load_static_server: cannot listen on {addr}: {e}");
                std::process::ExitCode::from(2)
            }
        }
    })
}

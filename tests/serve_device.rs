//! Device selection on a machine without a GPU (where one is present, `--device cuda` is
//! exercised by the parity tests and scripts/gpu-bench.sh instead).
mod support;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

fn gpu_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
}

#[test]
fn device_cuda_without_a_gpu_exits_non_zero_with_one_line() {
    if gpu_present() {
        println!("skipped: a GPU is present, so --device cuda does not fail here");
        return;
    }
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["serve", "--device", "cuda", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("--device cuda") && lines[0].contains("not found"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn device_auto_serves_on_the_cpu_and_says_why() {
    if gpu_present() {
        println!("skipped: a GPU is present, so auto picks CUDA");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["serve", "--device", "auto", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reason = None;
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "device auto: using the CPU" {
            reason = v["reason"].as_str().map(String::from);
        }
        if v["message"] == "listening" {
            let addr: std::net::SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
            assert_eq!(support::serve::request(addr, "GET", "/", b"").json()["device"], "cpu");
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let reason = reason.expect("auto logged why it chose the CPU");
    assert!(reason.contains("not found"), "{reason}");
}

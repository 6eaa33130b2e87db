//! The one error formatter: an error and its sources on one line, each said once
//! (`cannot start: connection refused`), for the status line, logs and the commands' exit.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(io).context("cannot reach 127.0.0.1:9090");
        assert_eq!(super::chain(e.as_ref()), "cannot reach 127.0.0.1:9090: connection refused");
        let same = anyhow::anyhow!("timeout").context("timeout");
        assert_eq!(super::chain(same.as_ref()), "timeout");
    }
}

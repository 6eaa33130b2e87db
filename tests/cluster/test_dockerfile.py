"""The Dockerfile (SPEC §5), read as text: no Docker engine here, so the build itself is
not run; what it promises is checked instead."""

from __future__ import annotations

import re

from conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
SHELL_TOOLS = ("curl", "wget", "bash", "busybox", "netcat", "nc ", "vim", "procps", "iputils")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """{stage name: its instructions}, plus "" for the global ARGs before the first FROM."""
    result: dict[str, list] = {"": []}
    current = ""
    for word, rest in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, rest
            current = m[2] or f"#{len(result)}"
            result[current] = [("FROM", m[1])]
        else:
            result[current].append((word, rest))
    return result


def global_args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in stages()[""] if word == "ARG" and "=" in rest)


def base_of(stage: str) -> str:
    base = stages()[stage][0][1]
    for k, v in global_args().items():
        base = base.replace("${" + k + "}", v)
    return base


def test_multi_stage_with_a_build_arg_choosing_gpu_or_cpu():
    st = stages()
    assert {"build", "runtime-gpu", "runtime-cpu", "final"} <= set(st)
    assert global_args()["VARIANT"] == "gpu"
    assert st["final"][0] == ("FROM", "runtime-${VARIANT}")
    # The final image takes only the binary from the build stage.
    copies = [rest for word, rest in st["final"] if word in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=build") for c in copies), copies
    assert "cargo build --release --locked --bin rtc-demo" in " ".join(r for _, r in st["build"])


def test_gpu_runtime_is_a_cuda_runtime_base_with_nvrtc():
    base = base_of("runtime-gpu")
    # The -runtime- images carry the CUDA shared libraries, NVRTC (cuda-nvrtc) included;
    # -base- would not.
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+", base), base


def test_cpu_runtime_is_slim_without_a_shell():
    assert re.fullmatch(r"gcr\.io/distroless/cc-debian\d+(:nonroot)?", base_of("runtime-cpu"))


def test_numeric_non_root_user_and_exec_form_entrypoint():
    final = stages()["final"]
    users = [rest for word, rest in final if word == "USER"]
    assert users == ["10001:10001"]
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/rtc-demo"]']
    assert [rest for word, rest in final if word == "CMD"] == ['["serve"]']
    assert ("EXPOSE", "8080 8443/udp 8443/tcp") in final


def test_both_images_carry_the_codec_libraries_the_binary_loads():
    # service/src/webrtc/{vp8,h264}.rs load these files by name, written for libvpx 1.12's
    # and OpenH264 2.3's ABIs; the build stage puts them in /out/lib, the final image copies it.
    assert 'pub const LIBVPX: &str = "libvpx.so.7";' in (ROOT / "service/src/webrtc/vp8.rs").read_text()
    assert 'pub const LIBOPENH264: &str = "libopenh264.so.7";' in (ROOT / "service/src/webrtc/h264.rs").read_text()
    final = stages()["final"]
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(c.endswith("/out/lib/ /usr/lib/x86_64-linux-gnu/") for c in copies), copies
    build = " ".join(rest for word, rest in stages()["build"] if word == "RUN")
    assert "/out/lib/libvpx.so.7" in build and "/out/lib/libopenh264.so.7" in build, build
    # The binary links libssl.so.3 (str0m's DTLS): both images carry it.
    assert "/out/lib/libssl.so.3" in build and "/out/lib/libcrypto.so.3" in build, build
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "RTC_WEBRTC_UDP=0.0.0.0:8443" in env and "RTC_WEBRTC_TCP=0.0.0.0:8443" in env, env


def test_no_shell_tools_installed_and_no_unpinned_bases():
    for stage, instrs in stages().items():
        for word, rest in instrs:
            if word != "RUN":
                continue
            # Only the build stage runs anything, and it installs only the codec libraries
            # that the final images copy out of it.
            assert stage == "build", f"RUN in stage {stage}: {rest}"
            assert not re.search(r"apk add|yum install|dnf install", rest), rest
            for packages in re.findall(r"apt-get install((?:\s+-\S+)*)\s+([^&|;]+)", rest):
                assert packages[1].split() == ["libvpx7", "libopenh264-7"], packages
            assert not any(t in rest for t in SHELL_TOOLS), rest
    for word, rest in instructions():
        if word == "FROM" and not rest.startswith("runtime-"):
            assert ":" in rest and ":latest" not in rest, rest
        assert word != "ADD", "COPY only: ADD fetches URLs and unpacks archives"


def test_build_context_has_what_the_build_copies_and_ignores_the_rest():
    for path in ("Cargo.toml", "Cargo.lock", "src", "service"):
        assert (ROOT / path).exists(), path
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"target", ".git", ".cache"} <= ignored
    assert not ignored & {"src", "service", "Cargo.toml", "Cargo.lock"}

# syntax=docker/dockerfile:1.7
# rtc-demo images, built from the repository root (Cargo.toml, Cargo.lock, src/, service/
# with the CUDA kernel sources service/kernels/*.cu that the service compiles with NVRTC
# at start-up).
#
#   GPU image (default):  docker build -t ghcr.io/rtc-demo/rtc-demo:0.1.0 .
#   CPU-only slim image:  docker build --build-arg VARIANT=cpu -t ghcr.io/rtc-demo/rtc-demo:0.1.0-cpu .
#
# GPU: the official CUDA *runtime* image, which carries libnvrtc (cuda-nvrtc) and
# libcudart; libcuda comes from the node's driver through the NVIDIA container runtime.
# The binary loads libcuda and libnvrtc at run time, so one build serves both images.
# CUDA_VERSION must be one the nodes' driver supports (12.6 needs driver >= 560 for
# kernels built by its NVRTC).
# CPU: distroless (glibc, libssl and libstdc++ only: no shell, no package manager).
# WebRTC: DTLS links OpenSSL 3 (libssl.so.3, libcrypto.so.3: distroless has them, the CUDA
# image's Ubuntu base may not, so both images take the build stage's); VP8 is libvpx 1.12
# (libvpx.so.7, Debian 12's libvpx7) and H.264 decoding OpenH264 2.3 (libopenh264.so.7),
# both loaded at run time: the build stage installs them and both images take those two
# files, so the binary finds the ABIs it was written for (Ubuntu 24.04, under the CUDA
# image, ships only libvpx.so.9). They need only glibc and libstdc++, which both bases have.
# Both run as the numeric non-root user 10001 and contain no curl, wget or shell tools
# of ours: probes are HTTP from the kubelet, so no HEALTHCHECK command is needed.

ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.6.3
ARG CUDA_OS=ubuntu24.04
ARG VARIANT=gpu

# ---- build: the release binary -------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvpx7 libopenh264-7 \
 && install -D -m 0644 /usr/lib/x86_64-linux-gnu/libvpx.so.7.1.0 /out/lib/libvpx.so.7 \
 && install -D -m 0644 /usr/lib/x86_64-linux-gnu/libopenh264.so.2.3.1 /out/lib/libopenh264.so.7 \
 && install -D -m 0644 /usr/lib/x86_64-linux-gnu/libssl.so.3 /out/lib/libssl.so.3 \
 && install -D -m 0644 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /out/lib/libcrypto.so.3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rtc-demo \
 && install -D -m 0755 target/release/rtc-demo /out/rtc-demo

# ---- runtime bases ---------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_OS} AS runtime-gpu
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RTC_DEVICE=auto

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime-cpu
ENV RTC_DEVICE=cpu

# ---- final image: VARIANT=gpu (default) or VARIANT=cpu ----------------------------------
# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS final
LABEL org.opencontainers.image.title="rtc-demo" \
      org.opencontainers.image.description="GPU media service (rtc-demo serve) and the autoscaling demo console" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build --chown=0:0 --chmod=0755 /out/rtc-demo /usr/local/bin/rtc-demo
COPY --from=build --chown=0:0 --chmod=0644 /out/lib/ /usr/lib/x86_64-linux-gnu/
ENV RTC_LISTEN=0.0.0.0:8080 \
    RTC_WEBRTC_UDP=0.0.0.0:8443 \
    RTC_WEBRTC_TCP=0.0.0.0:8443
USER 10001:10001
EXPOSE 8080 8443/udp 8443/tcp
ENTRYPOINT ["/usr/local/bin/rtc-demo"]
CMD ["serve"]

# syntax=docker/dockerfile:1.7
# hotline-operator: a static (musl) binary on a distroless base, run as
# non-root (UID 65532) with nothing else in the image: no shell, no package
# manager. Native build per platform (amd64, arm64):
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/hotline-operator:<version> .
# The chart's pod meets the restricted Pod Security Standard with it
# (read-only root filesystem: the operator writes no file).

# The toolchain the project is developed and tested with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# musl-gcc compiles ring's C and assembly for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac >/rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
# Only what the build reads (.dockerignore allows nothing else): the manifest
# names a bench target, so benches/ must exist for cargo to load it.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# No debug info in the image (the release profile keeps some for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --bin hotline-operator --target "$target" \
 && install -D -m 0755 "target/$target/release/hotline-operator" /out/hotline-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hotline-operator /usr/local/bin/hotline-operator
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hotline-operator"]

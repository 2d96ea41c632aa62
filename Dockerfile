# A static redis-auth-proxy on distroless (CA roots included, no shell), running as a numeric
# non-root user. Build: docker build -t redis-auth-proxy:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin redis-auth-proxy \
    && cp target/x86_64-unknown-linux-musl/release/redis-auth-proxy /redis-auth-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /redis-auth-proxy /redis-auth-proxy
USER 65532:65532
# 6379: the local Redis listener (loopback by default); 6479: admin, probes and metrics.
EXPOSE 6379 6479
ENTRYPOINT ["/redis-auth-proxy"]
CMD ["run"]

# Multi-stage build of the tidemark worker (also serves the vendor simulators).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY schemas ./schemas
RUN cargo build --release --locked --bin tidemark

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tidemark /usr/local/bin/tidemark
COPY schemas /usr/share/tidemark/schemas
COPY examples /etc/tidemark
USER 65532:65532
ENTRYPOINT ["tidemark"]
CMD ["--help"]

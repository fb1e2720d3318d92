# syntax=docker/dockerfile:1
# Both binaries in one small, non-root image: pendingjob-operator (entrypoint)
# and mock-api2 (/usr/local/bin/mock-api2).

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && install -D -m 0755 target/release/pendingjob-operator /out/pendingjob-operator \
    && install -D -m 0755 target/release/mock-api2 /out/mock-api2 \
    && install -D -m 0755 target/release/pendingjob-intake /out/pendingjob-intake

# glibc, CA certificates and a non-root user (65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pendingjob-operator /out/mock-api2 /out/pendingjob-intake /usr/local/bin/
USER 65532:65532
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/pendingjob-operator"]
CMD ["run"]

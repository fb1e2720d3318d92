# The binaries in one small, non-root image: pendingjob-operator (entrypoint),
# pendingjob-intake and mock-api2 (in /usr/local/bin).
# The base images are build arguments, so that a machine that cannot pull the
# public ones can build from local equivalents:
#   docker build --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=... .
# (No `# syntax=` line: it would fetch a frontend image, which fails offline.)
ARG BUILD_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
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
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/pendingjob-operator /out/mock-api2 /out/pendingjob-intake /usr/local/bin/
USER 65532:65532
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/pendingjob-operator"]
CMD ["run"]

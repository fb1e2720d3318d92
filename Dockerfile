# Two small, non-root images from one build:
#   the default target: pendingjob-operator (entrypoint) and pendingjob-intake;
#   --target mock-api2: the demo's flaky API 2, alone.
# The base images are build arguments, so that a machine that cannot pull the
# public ones can build from local equivalents (hack/image.sh does):
#   docker build --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=... .
# (No `# syntax=` line: it would fetch a frontend image, which fails offline.)
ARG BUILD_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
COPY mock-api2 ./mock-api2
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && install -D -m 0755 -t /out/operator target/release/pendingjob-operator target/release/pendingjob-intake \
    && install -D -m 0755 -t /out/mock-api2 target/release/mock-api2

# glibc, CA certificates and a non-root user (65532), nothing else.
FROM ${RUNTIME_IMAGE} AS mock-api2
COPY --from=build /out/mock-api2/mock-api2 /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mock-api2"]
CMD ["--listen=0.0.0.0:8080"]

# The production image: the operator and the intake, nothing of the demo.
FROM ${RUNTIME_IMAGE} AS operator
COPY --from=build /out/operator/ /usr/local/bin/
USER 65532:65532
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/pendingjob-operator"]
CMD ["run"]

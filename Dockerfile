# feedbridge container image: a static binary on a distroless base, run as
# an unprivileged user. The binary is built by `make build`, the same
# target CI runs (make test builds it too).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t feedbridge .
#   docker run -p 8080:8080 -e FEEDBRIDGE_TOKEN=$(openssl rand -hex 24) feedbridge
#
# The shipped bridge.yaml runs as is (embedded in-memory Redis); point it at
# a real Redis with -e FEEDBRIDGE_REDIS_URL=redis://redis:6379/0, or mount
# your own config over /etc/feedbridge/bridge.yaml.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN make build VERSION="$VERSION" COMMIT="$COMMIT" BIN=/out/bridge \
 && /out/bridge check -config bridge.yaml >/dev/null

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bridge /usr/local/bin/bridge
COPY --from=build /src/bridge.yaml /etc/feedbridge/bridge.yaml
# listen beyond the container's loopback; links name this URL
ENV FEEDBRIDGE_LISTEN=0.0.0.0:8080 \
    FEEDBRIDGE_PUBLIC_URL=http://localhost:8080
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/bridge", "health", "-url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/bridge"]
CMD ["run", "-config", "/etc/feedbridge/bridge.yaml"]

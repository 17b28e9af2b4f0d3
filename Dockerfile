# Build: a static binary. Run: distroless, non-root.
FROM golang:1.26.10 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY config/ config/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/keysmith ./cmd/keysmith

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keysmith /keysmith
USER 65532:65532
ENTRYPOINT ["/keysmith"]
CMD ["manager"]

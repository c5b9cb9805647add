# `mp signal` in a container: built with the Rust image, run on Debian slim as a user that owns
# nothing. See README ("mp signal" → "Operating it").
#
#   docker build -t mp-signal .
#   docker run -d --name mp-signal -p 8080:8080/tcp -p 8080:8080/udp \
#       --ulimit nofile=1048576:1048576 mp-signal
#
# One open file per client: mp raises its soft descriptor limit to the hard one at start and
# serves at most what that allows (it says so on stderr), so give the container a high hard
# limit with --ulimit (Docker's default is often 1024 or 524288, depending on the daemon).
# UDP on the same port is the STUN service; publish it too (or add --no-stun below).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mp

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mp
COPY --from=build /src/target/release/mp /usr/local/bin/mp
USER mp
EXPOSE 8080/tcp 8080/udp
# /healthz answers 200 "ok". The slim image has no HTTP client: bash's /dev/tcp is enough.
# (With --tls-cert, use a check from outside the container instead.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["mp", "signal"]
CMD ["--listen", "0.0.0.0:8080"]

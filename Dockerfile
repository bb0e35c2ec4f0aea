# syntax=docker/dockerfile:1
# ferroftp in a container: `docker build -t ferroftp .`, then see docs/src/operations/docker.md.
# The server runs as an unprivileged numeric user on 2121 with passive ports 30000-30009; no
# secrets are in the image (users and TLS files come from the /etc/ferroftp volume).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: rebuilt only when a manifest or the lock
# file changes, not at every source edit.
COPY Cargo.toml Cargo.lock ./
COPY crates/proto/Cargo.toml crates/proto/
COPY crates/ferroftp/Cargo.toml crates/ferroftp/
RUN mkdir -p crates/proto/src crates/ferroftp/src/bin/ferroftp \
 && touch crates/proto/src/lib.rs crates/ferroftp/src/lib.rs \
 && echo 'fn main() {}' > crates/ferroftp/src/bin/ferroftp/main.rs \
 && cargo build --release --locked -p ferroftp \
 && rm -rf crates/proto/src crates/ferroftp/src
COPY crates crates
# touch: cargo must see the real sources as newer than the stubs it has just built.
RUN touch crates/proto/src/lib.rs crates/ferroftp/src/lib.rs crates/ferroftp/src/bin/ferroftp/main.rs \
 && cargo build --release --locked -p ferroftp \
 && install -D -m 0755 target/release/ferroftp /out/usr/local/bin/ferroftp \
 && /out/usr/local/bin/ferroftp man --out /out/usr/local/share/man/man1 >/dev/null \
 && mkdir -p /out/srv/ftp /out/etc/ferroftp
COPY contrib/docker/ferroftp.toml /out/etc/ferroftp/ferroftp.toml

# glibc and libgcc (what a Rust binary links), CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local /usr/local
# The server writes uploads to /srv/ftp; `ferroftp passwd` (run in the container) writes the
# users file to /etc/ferroftp. 65532 is distroless' "nonroot".
COPY --from=build --chown=65532:65532 /out/srv/ftp /srv/ftp
COPY --from=build --chown=65532:65532 /out/etc/ferroftp /etc/ferroftp
USER 65532:65532
# Control port; passive range (publish both with the same numbers: -p 2121:2121
# -p 30000-30009:30000-30009).
EXPOSE 2121/tcp
EXPOSE 30000-30009/tcp
VOLUME ["/srv/ftp", "/etc/ferroftp"]
# SIGTERM: stop accepting, let transfers finish for limits.shutdown_grace_secs (30 s): give
# `docker stop` more time than that (docker stop -t 40, or stop_grace_period in compose).
# SIGHUP (docker kill -s HUP) reloads the configuration and users.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ferroftp"]
CMD ["serve", "--config", "/etc/ferroftp/ferroftp.toml"]

//! TLS on the control connection (implicit and AUTH) and on data connections.

use super::*;

/// TLS handshake of an implicit FTPS connection, before the greeting.
pub(super) async fn implicit_handshake(
    tcp: TcpStream,
    live: &Live,
    metrics: &Metrics,
) -> Result<(Stream, Option<SessionTls>), String> {
    let tls = live
        .tls
        .as_ref()
        .ok_or_else(|| "TLS is not configured".to_string())?;
    let session = tls.session().map_err(|e| e.to_string())?;
    let stream = stream::accept_tls(tcp, session.control_config(), tls.handshake_timeout, |c| {
        session.stamp_control(c)
    })
    .await
    .map_err(|e| {
        metrics.tls_handshake_failed(TlsConnection::Control);
        e.to_string()
    })?;
    log_handshake("control", &stream);
    Ok((Stream::Tls(Box::new(stream)), Some(session)))
}

pub(super) fn log_handshake(
    what: &'static str,
    stream: &tokio_rustls::server::TlsStream<TcpStream>,
) {
    let conn = stream.get_ref().1;
    debug!(
        connection = what,
        version = ?conn.protocol_version(),
        suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
        handshake = ?conn.handshake_kind(),
        "TLS established"
    );
}

/// The TLS handshake of a data connection, refused unless it resumes the control session.
pub(super) async fn open_data_tls(tcp: TcpStream, p: &DataTls) -> Result<Stream, TransferError> {
    let (config, token) = p.session.data_config(p.direction);
    let tls = match stream::accept_tls(tcp, config, p.handshake_timeout, |c| {
        c.set_resumption_data(&token)
    })
    .await
    {
        Ok(tls) => tls,
        Err(e) => {
            p.metrics.tls_handshake_failed(TlsConnection::Data);
            warn!(error = %e, "TLS handshake on the data connection failed (is the client using PROT P?)");
            return Err(TransferError::DataTls(format!("TLS handshake failed: {e}")));
        }
    };
    log_handshake("data", &tls);
    if p.require_reuse {
        if let Err(why) = p.session.check_reuse(tls.get_ref().1) {
            warn!(
                reason = why,
                "refused a TLS data connection that is not bound to this session"
            );
            // Say goodbye properly, so the client sees a closed connection rather than an error.
            let mut tls = tls;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tls.shutdown()).await;
            return Err(TransferError::DataTls(format!(
                "{why}; the client must reuse the control connection's TLS session"
            )));
        }
    }
    p.session.grant(token);
    Ok(Stream::Tls(Box::new(tls)))
}

impl Session {
    /// The 234 is out: turn the control connection into TLS.
    pub(super) async fn handshake(&mut self, scratch: &mut Scratch) -> Event {
        let Some(session) = scratch.tls_ready.take() else {
            return Event::NotPlain;
        };
        // Anything the client sent after AUTH and before the handshake is plaintext that an
        // attacker could have injected; it must never run as if it came over TLS.
        if !self.lines.is_empty() || !self.inbuf.is_empty() {
            warn!("discarded plaintext commands pipelined after AUTH");
            self.lines.clear();
            self.inbuf.clear();
        }
        let Some(tcp) = self.ctrl.take_plain() else {
            return Event::NotPlain;
        };
        let timeout = self
            .live
            .tls
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |t| t.handshake_timeout);
        let handshake = stream::accept_tls(tcp, session.control_config(), timeout, |c| {
            session.stamp_control(c)
        });
        match handshake.await {
            Ok(s) => {
                log_handshake("control", &s);
                let version = tls_version(s.get_ref().1);
                self.ctrl = Stream::Tls(Box::new(s));
                self.tls = Some(session);
                Event::TlsEstablished(version)
            }
            Err(e) => {
                self.shared
                    .metrics
                    .tls_handshake_failed(TlsConnection::Control);
                warn!(error = %e, "TLS handshake on the control connection failed");
                Event::TlsFailed
            }
        }
    }

    // ---- data connection set-up ----

    /// How this transfer's data connection is protected, from PROT and the listener.
    pub(super) fn data_tls(&self, direction: DataDirection, protected: bool) -> Option<DataTls> {
        let session = self.tls.as_ref().filter(|_| protected)?;
        let tls = self.live.tls.as_ref()?;
        Some(DataTls {
            session: session.clone(),
            direction,
            handshake_timeout: tls.handshake_timeout,
            require_reuse: self.listener.require_session_reuse,
            require_close_notify: tls.require_close_notify,
            metrics: Arc::clone(&self.shared.metrics),
        })
    }

    /// The user a verified TLS client certificate logs in as, if it maps to `name`.
    pub(super) fn certificate_user(&self, name: &str) -> Option<crate::auth::User> {
        let conn = self.ctrl.tls_state()?;
        let leaf = conn.peer_certificates()?.first()?;
        let fingerprint = crate::policy::Fingerprint::of_der(leaf.as_ref());
        self.live.users.certificate_user(name, &fingerprint)
    }

    // ---- security ----
}
